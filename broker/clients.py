"""What the broker core knows of a front's clients: small protocols, so that the core (node,
vhost, queue) names no adapter (broker/connection.py, broker/channel.py implement them).
They import nothing of the core either (a queue is `Any` here): they stay outside its cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from broker.message import Message


class QueueOwner(Protocol):
    """A client connection that may own exclusive queues (deleted when it goes)."""

    display_name: str  # RabbitMQ's name of the connection, for the API's owner_pid_details
    peer: tuple[str, int] | None
    exclusive_queues: list[Any]  # the broker.queue.Queue objects it owns


class ClientConnection(QueueOwner, Protocol):
    """A client connection open on a vhost, as the node keeps it."""

    vhost: Any  # the broker.vhost.VirtualHost it is open on (None before connection.open)

    def close_forced(self, reason: str) -> None:
        """Close it on the server's initiative (vhost deleted, shutdown, management)."""

    def alarms_changed(self) -> None:
        """A resource alarm was raised or cleared (a blocked publisher may go on)."""


class ReplyConsumer(Protocol):
    """A direct reply-to consumer (amq.rabbitmq.reply-to), which takes replies sent to it."""

    def deliver_reply(self, message: Message) -> None: ...
