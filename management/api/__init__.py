"""HTTP API resources, one module per kind of object, shaped like RabbitMQ 3.10's /api."""
