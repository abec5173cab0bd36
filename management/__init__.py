"""The management plane: a RabbitMQ-compatible HTTP API, Prometheus /metrics and a web UI, served
by the broker process on --management-port (aiohttp); `warren ctl` is a client of the API."""
