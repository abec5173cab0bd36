"""exchange.* and queue.* methods of a channel: declare, delete, bind, unbind, purge, with the
permission checks RabbitMQ makes for each (and, binding from a topic exchange, the topic
permission check of the binding key)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pamqp import commands as spec

from broker import names
from broker.errors import NotFound
from broker.resources import check_reserved_name, default_exchange_refused, not_found
from broker.vhost import DIRECT_REPLY_TO, exchange_type
from protocol.codec import unchecked

if TYPE_CHECKING:
    from broker.channel import Channel
    from broker.queue import Queue


def _reply_when_recorded(channel: Channel, reply: object) -> None:
    """Send the reply to a change of durable topology once the definitions file holding it is
    on disk: like RabbitMQ's answer after its database write, a declare-ok (or delete-ok, bind-ok)
    survives a crash right after it. Other changes are answered at once."""
    channel.connection.node.when_definitions_durable(lambda: channel.send_if_open(reply))


def exchange_declare(channel: Channel, method: spec.Exchange.Declare) -> None:
    vhost, name = channel.vhost, method.exchange
    if not method.passive:
        exchange_type(method.exchange_type)  # RabbitMQ's first check, before permissions
    if not method.passive and name:
        vhost.check_permission(channel.user, "configure", "exchange", name)
        alternate = (method.arguments or {}).get("alternate-exchange")
        if isinstance(alternate, str):
            vhost.check_permission(channel.user, "read", "exchange", name)
            vhost.check_permission(channel.user, "write", "exchange", alternate)
    existed = name in vhost.exchanges
    exchange = vhost.declare_exchange(
        name, method.exchange_type, passive=method.passive, durable=method.durable,
        auto_delete=method.auto_delete, internal=method.internal,
        arguments=method.arguments or {},
    )
    if not existed:
        exchange.declared_by = channel.user.name
    if not method.nowait:
        _reply_when_recorded(channel, spec.Exchange.DeclareOk())


def exchange_delete(channel: Channel, method: spec.Exchange.Delete) -> None:
    if method.exchange:
        channel.vhost.check_permission(channel.user, "configure", "exchange", method.exchange)
    channel.vhost.delete_exchange(method.exchange, method.if_unused)
    if not method.nowait:
        _reply_when_recorded(channel, spec.Exchange.DeleteOk())


def _check_e2e(channel: Channel, method: spec.Exchange.Bind | spec.Exchange.Unbind) -> None:
    """The checks of exchange.bind/unbind: no default exchange, write on the destination, read
    on the source, and read on the binding key if the source is a topic exchange."""
    for name in (method.source, method.destination):
        _refuse_default_exchange(name)
    vhost, user = channel.vhost, channel.user
    vhost.check_permission(user, "write", "exchange", method.destination)
    vhost.check_permission(user, "read", "exchange", method.source)
    _check_binding_key(channel, method.source, method.routing_key)


def _check_binding_key(channel: Channel, exchange_name: str, routing_key: str) -> None:
    """The topic permission check of a binding key, made (as RabbitMQ makes it) before the
    destination is looked up; a missing exchange is left to the 404 that follows."""
    exchange = channel.vhost.exchanges.get(exchange_name)
    if exchange is not None:
        channel.vhost.check_topic_permission(channel.user, "read", exchange, routing_key)


def exchange_bind(channel: Channel, method: spec.Exchange.Bind) -> None:
    _check_e2e(channel, method)
    vhost = channel.vhost
    destination = vhost.get_exchange(method.destination)
    source = vhost.get_exchange(method.source)
    vhost.bind(source, destination, method.routing_key, method.arguments or {})
    if not method.nowait:
        _reply_when_recorded(channel, spec.Exchange.BindOk())


def exchange_unbind(channel: Channel, method: spec.Exchange.Unbind) -> None:
    _check_e2e(channel, method)
    vhost = channel.vhost
    source = vhost.exchanges.get(method.source)
    destination = vhost.exchanges.get(method.destination)
    if source is not None and destination is not None:  # else the binding cannot exist: ok
        vhost.unbind(source, destination, method.routing_key, method.arguments or {})
    if not method.nowait:
        _reply_when_recorded(channel, spec.Exchange.UnbindOk())


def queue_declare(channel: Channel, method: spec.Queue.Declare) -> None:
    vhost, name = channel.vhost, method.queue
    if name == DIRECT_REPLY_TO or name.startswith(DIRECT_REPLY_TO + "."):
        # The pseudo-queue of direct reply-to always exists, with one consumer and no messages;
        # a reply address exists while the requester consumes.
        key = name[len(DIRECT_REPLY_TO) + 1 :]
        if name != DIRECT_REPLY_TO and key not in channel.connection.node.reply_channels:
            raise not_found("queue", name, vhost.name)
        if not method.nowait:
            channel.send_method(unchecked(spec.Queue.DeclareOk, queue=name, message_count=0,
                                          consumer_count=1))
        return
    if method.passive:
        name = queue_name(channel, name)
    else:
        if name:
            check_reserved_name("queue", name)
        else:
            vhost.check_server_named(method.arguments or {})
            name = names.generate("amq.gen-")
        vhost.check_permission(channel.user, "configure", "queue", name)
    queue = vhost.declare_queue(
        name, channel.connection, passive=method.passive, durable=method.durable,
        exclusive=method.exclusive, auto_delete=method.auto_delete,
        arguments=method.arguments or {},
    )
    channel.last_queue_name = queue.name
    if not method.nowait:
        _reply_when_recorded(channel, unchecked(
            spec.Queue.DeclareOk, queue=queue.name, message_count=queue.message_count,
            consumer_count=queue.consumer_count,
        ))


def queue_name(channel: Channel, name: str) -> str:
    """A method's queue name; "" means the queue this channel declared last."""
    if name:
        return name
    if not channel.last_queue_name:
        raise NotFound("no previously declared queue")
    return channel.last_queue_name


def queue_for(channel: Channel, name: str) -> Queue:
    """The queue a method names ("" meaning the channel's last declared queue), with exclusive
    access checked."""
    queue = channel.vhost.get_queue(queue_name(channel, name))
    channel.vhost.check_exclusive_access(queue, channel.connection)
    return queue


def _queue_binding(channel: Channel, method: spec.Queue.Bind | spec.Queue.Unbind,
                   ) -> tuple[str, str]:
    """The checks queue.bind and queue.unbind share, in RabbitMQ's order: (queue name,
    binding key)."""
    vhost, user = channel.vhost, channel.user
    name = queue_name(channel, method.queue)
    vhost.check_permission(user, "write", "queue", name)
    vhost.check_permission(user, "read", "exchange", method.exchange)
    _refuse_default_exchange(method.exchange)
    routing_key = _binding_key(method, name)
    _check_binding_key(channel, method.exchange, routing_key)
    return name, routing_key


def queue_bind(channel: Channel, method: spec.Queue.Bind) -> None:
    vhost = channel.vhost
    name, routing_key = _queue_binding(channel, method)
    queue = queue_for(channel, name)
    exchange = vhost.get_exchange(method.exchange)
    vhost.bind(exchange, queue, routing_key, method.arguments or {})
    if not method.nowait:
        _reply_when_recorded(channel, spec.Queue.BindOk())


def queue_unbind(channel: Channel, method: spec.Queue.Unbind) -> None:
    vhost = channel.vhost
    name, routing_key = _queue_binding(channel, method)
    queue, exchange = vhost.queues.get(name), vhost.exchanges.get(method.exchange)
    binding = None
    if queue is not None and exchange is not None:
        binding = exchange.find_binding(queue, routing_key, method.arguments or {})
    if binding is not None:  # unbinding what does not exist is fine, RabbitMQ says unbind-ok
        vhost.check_exclusive_access(queue, channel.connection)
        vhost.remove_binding(binding)
    _reply_when_recorded(channel, spec.Queue.UnbindOk())


def _binding_key(method: spec.Queue.Bind | spec.Queue.Unbind, queue: str) -> str:
    """The routing key of queue.bind/unbind: with no queue named and no key given, the name of
    the queue the channel declared last (RabbitMQ's shortcut)."""
    return method.routing_key or ("" if method.queue else queue)


def _refuse_default_exchange(name: str) -> None:
    if not name:
        raise default_exchange_refused()


def queue_purge(channel: Channel, method: spec.Queue.Purge) -> None:
    name = queue_name(channel, method.queue)
    channel.vhost.check_permission(channel.user, "read", "queue", name)
    queue = queue_for(channel, name)
    count = queue.purge()
    if not method.nowait:
        channel.send_method(spec.Queue.PurgeOk(count))


def queue_delete(channel: Channel, method: spec.Queue.Delete) -> None:
    vhost = channel.vhost
    name = queue_name(channel, method.queue)
    vhost.check_permission(channel.user, "configure", "queue", name)
    queue = vhost.queues.get(name)
    count, held = 0, []
    if queue is not None:
        vhost.check_exclusive_access(queue, channel.connection)
        with channel.deliveries.cancels_held() as held:
            count = vhost.delete_queue(queue, if_unused=method.if_unused,
                                       if_empty=method.if_empty)
    # RabbitMQ's channel answers delete-ok before it hears from the queue that its own
    # consumers are gone: basic.cancel follows delete-ok (kombu relies on that order).
    if method.nowait:
        channel.deliveries.send_cancels(held)
        return

    def reply() -> None:
        channel.send_if_open(spec.Queue.DeleteOk(count))
        channel.deliveries.send_cancels(held)

    channel.connection.node.when_definitions_durable(reply)


HANDLERS = {
    spec.Exchange.Declare: exchange_declare,
    spec.Exchange.Delete: exchange_delete,
    spec.Exchange.Bind: exchange_bind,
    spec.Exchange.Unbind: exchange_unbind,
    spec.Queue.Declare: queue_declare,
    spec.Queue.Bind: queue_bind,
    spec.Queue.Unbind: queue_unbind,
    spec.Queue.Purge: queue_purge,
    spec.Queue.Delete: queue_delete,
}
