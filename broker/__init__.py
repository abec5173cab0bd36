"""The broker: the AMQP adapter (transport, connection, channel), the core (node, vhosts,
exchanges, queues, consumers, domain errors) and the process (config, server). See
docs/architecture.md."""

__version__ = "0.1.0"
RABBITMQ_VERSION = "3.10.8"  # the RabbitMQ version whose behaviour Warren follows
