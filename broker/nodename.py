"""The node's name, RabbitMQ style (warren@host, or the configured one in a cluster): a module
of its own so that the core's modules can name the node without importing broker/node.py."""

from __future__ import annotations

import platform

_name = f"warren@{platform.node()}"


def node_name() -> str:
    """The node's name, RabbitMQ style: warren@host, or the one given in a cluster."""
    return _name


def name_this_node(name: str) -> None:
    """In a cluster, once at start: the node's configured name (`cluster.node_name`)."""
    global _name
    _name = name
