"""The management plane: a RabbitMQ-compatible HTTP API and Prometheus /metrics, served by the
broker process on --management-port (aiohttp)."""
