"""Who may open a connection to which vhost: the core's checks behind AMQP's connection.open
(the vhost exists, the user has permissions in it, the node's connection limit), raised as
domain errors that the front turns into its answer (AMQP: 530 NOT_ALLOWED on connection.open,
see broker/connection.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.errors import NotAllowed

if TYPE_CHECKING:
    from broker.auth import User
    from broker.node import Node
    from broker.vhost import VirtualHost


def admit(node: Node, user: User, vhost_name: str) -> VirtualHost:
    """The vhost `user` may connect to, or NotAllowed with RabbitMQ's text."""
    vhost = node.vhosts.get(vhost_name)
    if vhost is None:
        raise NotAllowed(f"vhost {vhost_name} not found")
    if node.access.permission(user.name, vhost.name) is None:
        raise NotAllowed(f"access to vhost '{vhost.name}' refused for user '{user.name}'")
    limit = node.config.max_connections
    if limit and len(node.connections) >= limit:
        raise NotAllowed(f"connection refused: node connection limit ({limit}) is reached")
    return vhost
