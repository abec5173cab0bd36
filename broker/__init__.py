"""The broker: server, connections, channels, vhosts, exchanges, queues and consumers."""

__version__ = "0.1.0"
RABBITMQ_VERSION = "3.10.8"  # the RabbitMQ version whose behaviour Warren follows
