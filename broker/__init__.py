"""The broker: server, connections, channels, vhosts, exchanges, queues and consumers."""

__version__ = "0.1.0"
