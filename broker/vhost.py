"""A virtual host: its exchanges, queues, bindings, policies and operator policies, declared,
looked up and deleted with RabbitMQ's rules and texts (refusals are broker/errors.py's domain
errors). The one publish every front calls: its checks (`exchange_for_publish`), then
`publish`: direct reply-to, the delayed exchange's hold, routing (`route`), putting it into its
queues, logged first when persistent (`enqueue`), and the counters. Messages held by delayed
exchanges. Permission and topic permission checks against the node's access control."""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import TYPE_CHECKING, Any

from broker import names, stepfailures, tracing
from broker.counters import ClosedTraffic, MessageCounters
from broker.errors import AccessRefused, CommandInvalid, PreconditionFailed
from broker.exchanges import (
    DELAYABLE_TYPES,
    EXCHANGE_TYPES,
    Binding,
    DefaultExchange,
    DelayedExchange,
    Exchange,
    route,
)
from broker.exchanges.delayed import RELEASE_RETRY_SECONDS, delay_of, delivered_properties
from broker.message import Message
from broker.policies import Policy, effective_policy
from broker.queue import Queue
from broker.queue_args import QUEUE_TYPES, QueueSettings, resolve
from broker.queue_types import queue_type_of, refuses_server_names, type_of_queue
from broker.resources import (
    check_reserved_name,
    default_exchange_refused,
    is_reserved,
    not_found,
    queue_locked,
    resource,
)
from broker.stepfailures import StepFailures

if TYPE_CHECKING:
    from broker.auth import AccessControl, User
    from broker.clients import QueueOwner
    from broker.tracesessions import TraceSession
    from broker.tracing import Traced
    from storage.store import MessageStore

# Direct reply-to's pseudo-queue; a reply is published to the default exchange with this, a
# dot and the requester's key as its routing key.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_REPLY_PREFIX = DIRECT_REPLY_TO + "."

STANDARD_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
    ("amq.rabbitmq.trace", "topic"),
)


def exchange_type(type_name: str) -> type[Exchange]:
    """The class of an exchange type; CommandInvalid for one RabbitMQ does not know, which a
    declare checks before anything else."""
    exchange_class = EXCHANGE_TYPES.get(type_name)
    if exchange_class is None:
        raise CommandInvalid(f"unknown exchange type '{type_name}'")
    return exchange_class


class VirtualHost:
    def __init__(self, name: str, access: AccessControl) -> None:
        self.name = name
        self.access = access
        self.queues: dict[str, Queue] = {}
        self.logging_queues = 0  # queues that log transient messages too (quorum queues)
        self.store: MessageStore | None = None  # set once the node's storage is open
        self.policies: dict[str, Policy] = {}
        self.operator_policies: dict[str, Policy] = {}  # limits policies cannot raise
        self.description = ""
        self.tags: list[str] = []
        self.default_queue_type: str | None = None  # None: RabbitMQ's "undefined"
        self.tracing = False  # firehose on (broker/tracing.py; switched by Node.set_tracing)
        self.trace_sessions: list[TraceSession] = []  # the UI's (broker/tracesessions.py)
        # The node's, shared (see Node.add_vhost); a vhost of its own has its own.
        self.counters = MessageCounters()
        self.closed_traffic = ClosedTraffic()  # of its connections and channels that closed
        self.dead_lettered: dict[tuple[str, str, str], int] = {}
        self.step_failures = StepFailures()
        # Direct reply-to: (key, message) -> whether a requester took it (the node's registry).
        self.deliver_reply: Callable[[str, Message], bool] = lambda _key, _message: False
        self.on_definitions_changed: Callable[[], None] = lambda: None
        self.default_exchange = DefaultExchange(self.queues.get)
        self.exchanges: dict[str, Exchange] = {"": self.default_exchange}
        for exchange_name, type_name in STANDARD_EXCHANGES:
            self.exchanges[exchange_name] = EXCHANGE_TYPES[type_name](
                exchange_name, durable=True, internal=exchange_name == "amq.rabbitmq.trace"
            )
        # What routing is given, bound once rather than for every message.
        self._find_exchange = self.exchanges.get
        self._hold = self._hold_if_delayed

    # -- metadata -------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """RabbitMQ's vhost metadata: description, tags, and the default queue type if set."""
        metadata: dict[str, Any] = {"description": self.description, "tags": list(self.tags)}
        if self.default_queue_type is not None:
            metadata["default_queue_type"] = self.default_queue_type
        return metadata

    def update_metadata(self, description: Any = None, tags: Any = None,
                        default_queue_type: Any = None) -> None:
        """Set what is given (None keeps the value); tags as a list or "a,b". A queue type
        other than classic, quorum or stream is RabbitMQ's invalid_queue_type (ValueError),
        and then nothing changes."""
        if default_queue_type is not None and default_queue_type not in QUEUE_TYPES:
            raise ValueError("invalid_queue_type")
        if description is not None:
            self.description = str(description)
        if isinstance(tags, str):
            self.tags = [tag for tag in tags.split(",") if tag]
        elif tags is not None:
            self.tags = [str(tag) for tag in tags]
        if default_queue_type is not None:
            self.default_queue_type = default_queue_type
        self.on_definitions_changed()

    # -- permissions ----------------------------------------------------------------------

    def check_permission(
        self, user: User, kind: str, resource_kind: str, name: str
    ) -> None:
        """AccessRefused unless `user` has `kind` (configure/write/read) on the named resource."""
        checked_name = name or "amq.default" if resource_kind == "exchange" else name
        permission = self.access.permission(user.name, self.name)
        if permission is None or not permission.allows(kind, checked_name):
            raise AccessRefused(
                f"access to {resource(resource_kind, checked_name, self.name)} "
                f"refused for user '{user.name}'"
            )

    def check_topic_permission(
        self, user: User, kind: str, exchange: Exchange, routing_key: str
    ) -> None:
        """AccessRefused unless `user` may use `routing_key` on the topic exchange `exchange`:
        write to publish with it, read to bind with it. Without a topic permission for the
        exchange everything is allowed; other exchange types are never checked."""
        if exchange.type_name != "topic":
            return
        permission = self.access.topic_permissions.get((user.name, self.name, exchange.name))
        if permission is not None and not permission.allows(kind, routing_key):
            raise AccessRefused(
                f"access to topic '{routing_key}' in exchange '{exchange.name}' in vhost "
                f"'{self.name}' refused for user '{user.name}'"
            )

    # -- exchanges ------------------------------------------------------------------------

    def get_exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise not_found("exchange", name, self.name)
        return exchange

    def declare_exchange(
        self, name: str, type_name: str, *, passive: bool, durable: bool, auto_delete: bool,
        internal: bool, arguments: dict[str, Any],
    ) -> Exchange:
        """exchange.declare after its permission checks, which come after the type's (see
        topology.exchange_declare)."""
        if not passive:
            exchange_class = exchange_type(type_name)
        if not name:
            raise default_exchange_refused()
        if passive:
            return self.get_exchange(name)
        existing = self.exchanges.get(name)
        if existing is None:
            check_reserved_name("exchange", name)
        if existing is not None:
            self._check_exchange_equivalence(
                existing, type_name, durable, auto_delete, internal, arguments
            )
            return existing
        if exchange_class is DelayedExchange:
            exchange = DelayedExchange(
                name, inner_types=DELAYABLE_TYPES, durable=durable, auto_delete=auto_delete,
                internal=internal, arguments=arguments,
            )
            exchange.holding.release = partial(self._release_delayed, exchange)
        else:
            exchange = exchange_class(
                name, durable=durable, auto_delete=auto_delete, internal=internal,
                arguments=arguments,
            )
        self.exchanges[name] = exchange
        if self.policies:
            self._apply_exchange_policy(exchange)
        if durable:
            self.on_definitions_changed()
        return exchange

    def _check_exchange_equivalence(
        self, exchange: Exchange, type_name: str, durable: bool, auto_delete: bool,
        internal: bool, arguments: dict[str, Any],
    ) -> None:
        what = resource("exchange", exchange.name, self.name)
        for arg, received, current in (
            ("type", type_name, exchange.type_name),
            ("durable", durable, exchange.durable),
            ("auto_delete", auto_delete, exchange.auto_delete),
            ("internal", internal, exchange.internal),
        ):
            if received != current:
                raise names.inequivalent(arg, what, received, current)
        names.check_arguments_equivalent(
            ("alternate-exchange",), arguments, exchange.arguments, what
        )

    def delete_exchange(self, name: str, if_unused: bool) -> None:
        if not name:
            raise default_exchange_refused()
        if is_reserved(name):
            raise AccessRefused(
                f"deletion of system {resource('exchange', name, self.name)} not allowed"
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise PreconditionFailed(f"{resource('exchange', name, self.name)} in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        if isinstance(exchange, DelayedExchange):
            held = exchange.holding.drop()
            if exchange.durable and self.store is not None:
                self.store.drop_queue(exchange.holding.key, held)
        for binding in list(exchange.bindings.values()):
            exchange.remove_binding(binding)
        for binding in list(exchange.bindings_in):
            self.remove_binding(binding)
        if exchange.durable:
            self.on_definitions_changed()

    # -- queues ---------------------------------------------------------------------------

    def get_queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise not_found("queue", name, self.name)
        return queue

    def declare_queue(
        self, name: str, connection: QueueOwner, *, passive: bool, durable: bool,
        exclusive: bool, auto_delete: bool, arguments: dict[str, Any], recovered: bool = False,
    ) -> Queue:
        """Declare (or find, when passive) a queue. A `recovered` one, from the broker's own
        definitions file, was accepted once: its arguments are not checked again (a later
        check must not lose a queue and its messages at start-up)."""
        if passive:
            queue = self.get_queue(name)
            self.check_exclusive_access(queue, connection)
            queue.declared_again()
            return queue
        if not recovered:
            self.counters.churn.queues_declared += 1
        what = resource("queue", name, self.name)
        typed = self._typed(arguments)
        queue_type = queue_type_of(typed, None if recovered else what)
        existing = self.queues.get(name)
        if existing is None and not recovered:  # (an existing queue's: only compared)
            queue_type.check(typed, what)
        if existing is not None:
            self.check_exclusive_access(existing, connection)
            if exclusive != existing.exclusive:
                raise queue_locked(existing.describe())
            self._check_queue_equivalence(existing, durable, auto_delete, typed)
            existing.declared_again()
            return existing
        if not recovered:
            queue_type.check_new(what, durable, exclusive, auto_delete)
            arguments = typed  # the vhost's default type is recorded, as RabbitMQ records it
        queue = queue_type.queue_class(
            self, name, durable=durable and not exclusive, auto_delete=auto_delete,
            owner=connection if exclusive else None, arguments=arguments,
            settings=self._queue_settings(name, arguments),
        )
        self.queues[name] = queue
        self.logging_queues += queue.logs_every_message
        queue.created(recovered)
        if not recovered:
            self.counters.churn.queues_created += 1
        if exclusive:
            connection.exclusive_queues.append(queue)
        if queue.durable:
            self.on_definitions_changed()
        return queue

    def check_server_named(self, arguments: dict[str, Any]) -> None:
        """PreconditionFailed if the queue type of a declare with queue="" (server-named)
        cannot have a generated name (quorum queues)."""
        module = refuses_server_names(self._typed(arguments))
        if module is not None:
            raise PreconditionFailed(f"Cannot declare a server-named queue for type {module}")

    def _typed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments with the vhost's default queue type where they name none, so that a
        default type Warren does not run is refused as the same x-queue-type would be."""
        if self.default_queue_type is None or "x-queue-type" in arguments:
            return arguments
        return {**arguments, "x-queue-type": self.default_queue_type}

    def _check_queue_equivalence(
        self, queue: Queue, durable: bool, auto_delete: bool, arguments: dict[str, Any]
    ) -> None:
        what = queue.describe()
        for arg, received, current in (
            ("durable", durable and not queue.exclusive, queue.durable),
            ("auto_delete", auto_delete, queue.auto_delete),
        ):
            if received != current:
                raise names.inequivalent(arg, what, received, current)
        type_of_queue(queue).check_equivalent(arguments, queue.arguments, what)

    @staticmethod
    def check_exclusive_access(queue: Queue, connection: QueueOwner | None) -> None:
        """ResourceLocked if `queue` is exclusive to another connection (`None`: no connection,
        as for the management API)."""
        if queue.owner is not None and queue.owner is not connection:
            raise queue_locked(queue.describe())

    def delete_queue(self, queue: Queue, *, if_unused: bool = False,
                     if_empty: bool = False) -> int:
        """Remove a queue with its bindings; its consumers are told with basic.cancel. Returns
        how many messages it held. PreconditionFailed (and nothing removed) if `if_unused` and
        it has consumers, or `if_empty` and it holds messages."""
        if queue.deleted:
            return 0
        queue.check_delete(if_unused, if_empty)
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"{queue.describe()} in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"{queue.describe()} not empty")
        queue.deleted = True
        self.counters.churn.queues_deleted += 1
        count = queue.message_count
        self.queues.pop(queue.name, None)
        self.logging_queues -= queue.logs_every_message
        for binding in list(queue.bindings_in):
            self.remove_binding(binding)
        for consumer in list(queue.consumers):
            consumer.target.cancelled(consumer)
        queue.drop_everything()
        if queue.owner is not None and queue in queue.owner.exclusive_queues:
            queue.owner.exclusive_queues.remove(queue)
        if queue.durable:
            self.on_definitions_changed()
        return count

    # -- policies -------------------------------------------------------------------------

    def set_policy(self, policy: Policy) -> None:
        self.set_policies([policy])

    def set_policies(self, policies: list[Policy], operator: bool = False) -> None:
        """Add or replace several policies (`operator`: operator policies), then apply them
        to every queue and exchange once."""
        table = self.operator_policies if operator else self.policies
        for policy in policies:
            table[policy.name] = policy
        self._apply_policies()

    def clear_policy(self, name: str, operator: bool = False) -> None:
        table = self.operator_policies if operator else self.policies
        if table.pop(name, None) is not None:
            self._apply_policies()

    def _queue_settings(self, name: str, arguments: dict[str, Any]) -> QueueSettings:
        """A queue's settings from its arguments, its policy and its operator policy."""
        return resolve(arguments, effective_policy(self.policies, "queues", name),
                       effective_policy(self.operator_policies, "queues", name))

    def _apply_policies(self) -> None:
        for queue in list(self.queues.values()):
            queue.apply_settings(self._queue_settings(queue.name, queue.arguments))
        for exchange in self.exchanges.values():
            if exchange.name:
                self._apply_exchange_policy(exchange)
        self.on_definitions_changed()

    def _apply_exchange_policy(self, exchange: Exchange) -> None:
        policy = effective_policy(self.policies, "exchanges", exchange.name)
        exchange.policy = policy.name if policy else None
        alternate = policy.definition.get("alternate-exchange") if policy else None
        exchange.policy_alternate_exchange = alternate if isinstance(alternate, str) else None

    # -- bindings -------------------------------------------------------------------------

    def bind(
        self, source: Exchange, destination: Queue | Exchange, routing_key: str,
        arguments: dict[str, Any],
    ) -> bool:
        """Whether the binding is new (binding twice is allowed and changes nothing)."""
        source.validate_binding(arguments)
        added = source.add_binding(Binding(source, destination, routing_key, arguments))
        if added and source.durable and destination.durable:
            self.on_definitions_changed()
        return added

    def unbind(
        self, source: Exchange, destination: Queue | Exchange, routing_key: str,
        arguments: dict[str, Any],
    ) -> None:
        binding = source.find_binding(destination, routing_key, arguments)
        if binding is not None:
            self.remove_binding(binding)

    def remove_binding(self, binding: Binding) -> None:
        """Remove a binding; an auto-delete exchange that loses its last one goes too."""
        source = binding.source
        source.remove_binding(binding)
        if source.durable and binding.destination.durable:
            self.on_definitions_changed()
        if source.auto_delete and not source.bindings and self.exchanges.get(source.name) is source:
            self._remove_exchange(source)

    # -- publishing -----------------------------------------------------------------------

    def exchange_for_publish(self, user: User, name: str, routing_key: str,
                             permitted: bool = False) -> Exchange:
        """The exchange `user` publishes to, after RabbitMQ's checks in its order: write
        permission (not checked again when the caller knows `permitted`: the AMQP channel
        remembers the last exchange it checked), existence, not internal, the topic
        permission of `routing_key` (topic exchanges; none at all while the node has none)."""
        if not permitted:
            self.check_permission(user, "write", "exchange", name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise not_found("exchange", name, self.name)
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal {resource('exchange', name, self.name)}")
        if exchange.type_name == "topic" and self.access.topic_permissions:
            self.check_topic_permission(user, "write", exchange, routing_key)
        return exchange

    def publish(self, exchange: Exchange, message: Message, *, mandatory: bool = False,
                confirm: bool = False, origin: Traced | None = None,
                by_queue: dict[tuple[str, str], int] | None = None) -> tuple[int, int, bool]:
        """Publish a complete message to `exchange`, as every front does (basic.publish, the
        API's publish, the aliveness test): `route_publish`, then `put_routed`. Returns (how
        many queues it reached, 0 when unroutable — returned to a `mandatory` publisher; the
        log ticket to wait for before confirming, or 0; whether a queue refused it,
        x-overflow reject-publish: a nack for a `confirm` publisher).

        Malformed headers that routing must read raise ValueError, IndexError, KeyError or
        struct.error (the message is counted as received, nothing else happens)."""
        queues, ticket = self.route_publish(exchange, message, origin, confirm)
        return self.put_routed(exchange, message, queues, ticket, mandatory, by_queue)

    def route_publish(self, exchange: Exchange, message: Message, origin: Traced | None = None,
                      confirm: bool = False) -> tuple[Collection[Queue] | None, int]:
        """A publish's first step, which RabbitMQ's channel takes at basic.publish, in a
        transaction too (whose queues get the message only at tx.commit): the message is
        counted as received, direct replies are handed to their requesters, a message for a
        delayed exchange with an x-delay is held (returns None and the hold's log ticket), any
        other is routed (returns its queues and 0); the publish is traced.

        (On the hot path: it calls exchanges.route itself, not `self.route`.)"""
        counters = self.counters
        counters.messages_received += 1
        if confirm:
            counters.messages_received_confirm += 1
        queues: Collection[Queue] | None = None
        if exchange is self.default_exchange:
            if message.cc or message.routing_key.startswith(_REPLY_PREFIX):
                self._deliver_replies(message)
            elif (queue := self.queues.get(message.routing_key)) is not None:
                queues = (queue,)  # (what `route` finds, without its calls: the usual case)
        elif isinstance(exchange, DelayedExchange) and (delay := delay_of(message)):
            # Held, so routed nowhere yet: a mandatory one is returned now, as the plugin
            # does, and still delivered when its time comes. (The plugin holds it while
            # routing, so in a transaction at basic.publish: a rollback does not undo it.)
            ticket = self.hold_delayed(exchange, message, delay)
            if self.tracing:
                tracing.published(self, message, (), origin or tracing.UNKNOWN)
            return None, ticket
        if queues is None:
            queues = route(exchange, message, self._find_exchange, self._hold)
        if self.tracing:
            tracing.published(self, message, queues, origin or tracing.UNKNOWN)
        return queues, 0

    def put_routed(self, exchange: Exchange, message: Message, queues: Collection[Queue] | None,
                   ticket: int, mandatory: bool = False,
                   by_queue: dict[tuple[str, str], int] | None = None) -> tuple[int, int, bool]:
        """A publish's second step: put the message routed by `route_publish` into its
        `queues` (None: held by a delayed exchange, whose log `ticket` is given); the
        exchange's and the node's counters count it, and so does the publishing channel's
        `by_queue` (ChannelStats.routed). Returns what `publish` returns."""
        counters = self.counters
        refused = False
        if queues is None:
            routed = 0
        else:
            routed = len(queues)
            exchange.messages_in += 1
            exchange.messages_out += routed
            if routed:
                # Published to each (refused or not; dead letters are not), and counted by
                # the publishing channel per queue and exchange.
                if by_queue is None:
                    for queue in queues:
                        queue.messages_published += 1
                else:
                    name = exchange.name
                    for queue in queues:
                        queue.messages_published += 1
                        key = (queue.name, name)
                        by_queue[key] = by_queue.get(key, 0) + 1
                if message.persistent or self.logging_queues:
                    ticket, refused = self.enqueue(message, queues)
                else:  # (what enqueue does with it, one call less)
                    ticket, refused = self._put(message, queues)
        if routed:
            counters.messages_routed += routed
        elif mandatory:
            counters.messages_unroutable_returned += 1
        else:
            counters.messages_unroutable_dropped += 1
        return routed, ticket, refused

    def _deliver_replies(self, message: Message) -> None:
        """Direct reply-to, as RabbitMQ's default exchange routes: each reply key among the
        routing key and the CC and BCC keys hands the message to its requester, once; the
        other keys name queues as usual. A reply counts as routed to no queue (RabbitMQ 3.10
        returns a mandatory one, though its requester gets it)."""
        keys = {message.routing_key, *message.cc}
        for key in sorted(key for key in keys if key.startswith(_REPLY_PREFIX)):
            self.deliver_reply(key[len(_REPLY_PREFIX):], message)

    def queues_now(self, queues: Collection[Queue]) -> list[Queue]:
        """The queues that have these queues' names now: a publish in a transaction, routed at
        basic.publish, reaches at tx.commit the queues its routing named, looked up by name as
        RabbitMQ does (one deleted meanwhile is skipped, one declared again gets it)."""
        current = (self.queues.get(queue.name) for queue in queues)
        return [queue for queue in current if queue is not None]

    def hold_delayed(self, exchange: DelayedExchange, message: Message, delay: int) -> int:
        """Keep a message in a delayed exchange, as delivered later (x-delay negated); on a
        durable exchange it is logged whatever its delivery mode. Returns the log ticket."""
        try:
            props_raw = delivered_properties(message, delay)
        except Exception as error:  # held as published rather than refused
            props_raw = message.props_raw
            self.step_failures.record(
                stepfailures.DELAYED, self._describe_exchange(exchange), error,
                "the message is held with its properties unchanged (x-delay not negated)",
            )
        held = Message(message.exchange, message.routing_key, message.route_bytes, props_raw,
                       message.body)
        held.cc, held.persistent, held.timestamp = message.cc, message.persistent, message.timestamp
        held.expiration = message.expiration
        ticket = 0
        if exchange.durable:
            ticket = self.store.persist(held, [exchange.holding.key])
        exchange.holding.hold(held, delay)
        return ticket

    def _release_delayed(self, exchange: DelayedExchange, message: Message) -> None:
        """A delayed message's time has come: route it as its exchange's type would. If that
        fails, the exchange holds it a while longer (and tries again)."""
        try:
            queues = self.route(exchange, message)
        except Exception as error:
            exchange.holding.hold_again(message)
            self.step_failures.record(
                stepfailures.DELAYED, self._describe_exchange(exchange), error,
                f"the message stays held and is tried again every {RELEASE_RETRY_SECONDS} s",
            )
            return
        if message.store_ref is not None:  # logged afresh for the queues it reaches now
            self.store.release(exchange.holding.key, message)
        self.enqueue(message, queues)

    def _describe_exchange(self, exchange: Exchange) -> str:
        return resource("exchange", exchange.name, self.name)

    def enqueue(self, message: Message, queues: Collection[Queue]) -> tuple[int, bool]:
        """Put a routed message into its queues: logged first if it is persistent (once, for
        the durable ones). Returns (the log ticket to wait for, or 0; whether a queue refused
        it)."""
        if not message.persistent:
            if self.logging_queues:
                return self._enqueue_transient(message, queues)
            return self._put(message, queues)
        ticket = 0
        durable = [queue for queue in queues if queue.durable and not queue.logs_itself]
        if durable:
            ticket = self.store.persist(message, [queue.key for queue in durable])
        put_ticket, refused = self._put(message, queues)
        return max(ticket, put_ticket), refused

    def _enqueue_transient(self, message: Message, queues: Collection[Queue]
                           ) -> tuple[int, bool]:
        """A transient message: logged for the queues that log every message (quorum queues);
        the others get an unlogged twin (the same body), which a restart forgets."""
        logging = [queue for queue in queues if queue.logs_every_message]
        if not logging:
            return self._put(message, queues)
        ticket = self.store.persist(message, [queue.key for queue in logging])
        put_ticket, refused = self._put(message, logging)
        ticket = max(ticket, put_ticket)
        if len(logging) < len(queues):
            others = [queue for queue in queues if not queue.logs_every_message]
            put_ticket, refused_by_other = self._put(message.unlogged_twin(), others)
            ticket, refused = max(ticket, put_ticket), refused or refused_by_other
        return ticket, refused

    @staticmethod
    def _put(message: Message, queues: Collection[Queue]) -> tuple[int, bool]:
        """Enqueue into each queue. Returns the log ticket of the queues that keep their own log
        (streams: the confirm waits for it), or 0; and whether a queue refused the message."""
        ticket = 0
        refused = False
        for queue in tuple(queues) if len(queues) > 1 else queues:
            if not queue.enqueue(message):
                queue.discard(message)
                refused = True
            elif queue.logs_itself:  # a stream: its own log, durable under this ticket
                ticket = max(ticket, queue.log_ticket)
        return ticket, refused

    def route(self, exchange: Exchange, message: Message) -> Collection[Queue]:
        """The queues a message reaches (a delayed exchange behind an e2e binding holds it);
        for the core's own publishes (dead-lettering, a delayed message's release), which
        count nothing."""
        return route(exchange, message, self._find_exchange, self._hold)

    def _hold_if_delayed(self, exchange: Exchange, message: Message) -> bool:
        """A message reaching a delayed exchange through an e2e binding waits there too."""
        if not isinstance(exchange, DelayedExchange):
            return False
        delay = delay_of(message)
        if delay:
            self.hold_delayed(exchange, message, delay)
        return bool(delay)
