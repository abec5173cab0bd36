"""/api/queues: list, show, declare, delete, purge, get messages; queue bindings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker import stepfailures, tracing
from broker.consumer_use import consumer_capacity
from broker.errors import BrokerError
from broker.message import QueuedMessage
from broker.policies import merged_definition
from broker.queue import Queue
from broker.resources import is_reserved, resource
from management.api.common import (
    USER,
    Ranges,
    access_refused,
    bad_request,
    check_name_length,
    error,
    json_body,
    json_response,
    listing,
    node_of,
    not_found,
    parse_bool,
    refusal,
    requested_ranges,
    require_keys,
    require_permission,
    trace_origin,
    vhost_for_write,
    vhost_of,
)
from management.api.connections import consumer_info
from management.api.message_json import payload_json, properties_json
from management.api.overview import node_name
from management.api.queue_figures import NO_PENDING, Pending, classic_fields, pending_acks
from management.api.queue_type_fields import with_type_fields
from management.rates import QUEUE, QUEUE_LENGTHS, QUEUE_STATS, RATES_KEY, Rates


def queue_info(queue: Queue, rates: Rates, ranges: Ranges, pending: Pending,
               single: bool = False) -> dict[str, Any]:
    """A queue's API object as RabbitMQ 3.10.8 shows it in a list, or (`single`) at its own
    URL, which adds consumer_details, incoming and deliveries (per-exchange and per-channel
    rates: RabbitMQ fills them only in `detailed` rates mode, Warren's mode is `basic`)."""
    settings = queue.settings
    node = node_name()
    capacity = consumer_capacity(queue)
    info: dict[str, Any] = {
        "name": queue.name, "vhost": queue.vhost.name, "durable": queue.durable,
        "auto_delete": queue.auto_delete, "exclusive": queue.exclusive,
        "arguments": queue.arguments, "node": node, "type": queue.type_name,
        "state": "running", "policy": settings.policy,
        "operator_policy": settings.operator_policy,
        "effective_policy_definition": _policy_definition(queue),
        **rates.figures(QUEUE, queue, QUEUE_LENGTHS, ranges),
        "consumers": len(queue.consumers),
        "consumer_capacity": capacity, "consumer_utilisation": capacity,
        "exclusive_consumer_tag": (
            queue.exclusive_consumer.tag if queue.exclusive_consumer else None
        ),
        "single_active_consumer_tag": (
            queue.consumers.active.tag if queue.consumers.active else None
        ),
        "memory": queue.memory_estimate, "message_bytes": queue.ready_bytes + queue.unacked_bytes,
        "message_bytes_ready": queue.ready_bytes,
        "message_bytes_unacknowledged": queue.unacked_bytes,
        "recoverable_slaves": None,  # (classic queue mirroring: none on Warren)
    }
    stats = rates.message_stats(QUEUE, queue, QUEUE_STATS, ranges)
    if stats:
        info["message_stats"] = stats
    if queue.type_name == "classic":
        info.update(classic_fields(queue, pending, rates.rates_of(
            QUEUE, queue, ("publish", "deliver_get", "deliver", "ack"))))
        idle_since = rates.idle_since(QUEUE, queue)
        if idle_since is not None:
            info["idle_since"] = idle_since
    if queue.owner:
        peer_host, peer_port = queue.owner.peer or ("", 0)
        info["owner_pid_details"] = {"name": queue.owner.display_name,
                                     "peer_host": peer_host, "peer_port": peer_port}
    if single:
        info["consumer_details"] = [consumer_info(consumer) for consumer in queue.consumers]
        info["incoming"], info["deliveries"] = [], []
    return with_type_fields(info, queue, node)


def _policy_definition(queue: Queue) -> dict[str, Any]:
    """The policy's definition merged with the operator policy's, as RabbitMQ shows it."""
    vhost, settings = queue.vhost, queue.settings
    return merged_definition(vhost.policies.get(settings.policy or ""),
                             vhost.operator_policies.get(settings.operator_policy or ""))


def _queues(request: web.Request) -> list[Queue]:
    node = node_of(request)
    if "vhost" in request.match_info:
        return list(vhost_of(request).queues.values())
    return [queue for vhost in node.vhosts.values() for queue in vhost.queues.values()]


def queue_of(request: web.Request) -> Queue:
    queue = vhost_of(request).queues.get(request.match_info["name"])
    if queue is None:
        raise not_found()
    return queue


async def list_queues(request: web.Request) -> web.Response:
    rates = request.app[RATES_KEY]
    ranges = requested_ranges(request, "invalid_range_parameters")
    queues = _queues(request)
    pending = pending_acks(node_of(request)) if queues else {}
    return listing(request, [queue_info(queue, rates, ranges, pending.get(queue, NO_PENDING))
                             for queue in queues])


async def show_queue(request: web.Request) -> web.Response:
    queue = queue_of(request)
    ranges = requested_ranges(request)
    pending = pending_acks(node_of(request)).get(queue, NO_PENDING)
    return json_response(queue_info(queue, request.app[RATES_KEY], ranges, pending, True))


async def declare_queue(request: web.Request) -> web.Response:
    vhost = vhost_for_write(request)
    body = await json_body(request)
    name = request.match_info["name"]
    declaration = queue_declaration(name, body)
    existed = name in vhost.queues
    require_permission(request, vhost, "configure", "queue", name)
    try:
        vhost.declare_queue(name, None, passive=False, exclusive=False, **declaration)
    except BrokerError as failure:
        raise refusal(failure) from None
    return web.Response(status=204 if existed else 201)


def queue_declaration(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a PUT body (or a definitions entry) declares: vhost.declare_queue's durable,
    auto_delete and arguments, or the API's error for a bad name or value."""
    check_name_length("queue", name)
    if is_reserved(name):
        raise access_refused()
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    return {"durable": parse_bool(body.get("durable", False)),
            "auto_delete": parse_bool(body.get("auto_delete", False)), "arguments": arguments}


async def delete_queue(request: web.Request) -> web.Response:
    queue = queue_of(request)
    require_permission(request, queue.vhost, "configure", "queue", queue.name)
    try:
        queue.vhost.check_exclusive_access(queue, None)
        queue.vhost.delete_queue(queue, if_unused=request.query.get("if-unused") == "true",
                                 if_empty=request.query.get("if-empty") == "true")
    except BrokerError as failure:
        raise refusal(failure) from None
    return web.Response(status=204)


async def purge_queue(request: web.Request) -> web.Response:
    queue = queue_of(request)
    require_permission(request, queue.vhost, "read", "queue", queue.name)
    try:
        queue.vhost.check_exclusive_access(queue, None)
    except BrokerError as failure:
        raise refusal(failure) from None
    queue.purge()
    return web.Response(status=204)


async def get_messages(request: web.Request) -> web.Response:
    """Fetch messages as the management UI does: each is taken and then acked or requeued (the
    core's get in its two halves, Queue.take and Queue.hand_out). Every message is rendered
    before any is handed out: if one cannot be, all taken go back to their places untouched,
    and the answer is a 500 (the failure logged and counted)."""
    queue = vhost_of(request).queues.get(request.match_info["name"])
    if queue is None:
        raise error(404, "not_found", "NOT_FOUND - no " + resource(
            "queue", request.match_info["name"], request.match_info["vhost"]))
    body = await json_body(request)
    require_keys(body, "count", "ackmode", "encoding")
    try:  # RabbitMQ's API makes the get over AMQP, as the request's user
        queue.vhost.check_permission(request[USER], "read", "queue", queue.name)
        queue.vhost.check_exclusive_access(queue, None)
    except BrokerError as failure:
        raise refusal(failure, "amqp") from None
    ackmode = body["ackmode"]
    if body["encoding"] not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    if ackmode not in ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
                       "reject_requeue_false"):
        raise bad_request(f"invalid ackmode {ackmode!r}")
    count = _integer(body["count"])
    truncate = _integer(body["truncate"]) if "truncate" in body else None
    if truncate is not None and truncate < 0:  # RabbitMQ's answer too (an empty 500), though
        raise web.HTTPInternalServerError(text="")  # it takes the message first
    encoding = body["encoding"]
    node = node_of(request)
    taken: list[QueuedMessage] = []
    results = []
    try:
        for _ in range(count):
            entry = queue.take()
            if entry is None:
                break
            taken.append(entry)
            results.append(_message(queue, entry, encoding, truncate))
        answer = json_response(results)  # the JSON text too, before anything is settled
    except Exception as failure:
        queue.put_back(taken)
        node.step_failures.record(
            stepfailures.MANAGEMENT_GET, queue.describe(), failure,
            "the messages taken stay in the queue, untouched",
        )
        raise error(500, "internal_server_error",
                    f"could not render a message of {queue.describe()}; it stays in the queue "
                    f"({type(failure).__name__})") from None
    # As RabbitMQ's API: ack_requeue_false is a basic.get with no_ack (no ack counted), the
    # others a basic.get then a basic.reject (requeue or not).
    no_ack = ackmode == "ack_requeue_false"
    requeue = ackmode.endswith("requeue_true")
    api_channel = queue.vhost.closed_traffic.channels  # RabbitMQ's get is on a channel too
    if len(taken) < count:
        api_channel.gets_empty += 1
    for entry in taken:
        api_channel.count_get(entry.redelivered, no_ack)
        queue.hand_out(entry, no_ack)
        if queue.vhost.tracing:
            tracing.delivered(queue.vhost, queue, entry, trace_origin(request), get=True)
    if not no_ack:
        for entry in reversed(taken):
            if requeue:
                queue.requeue(entry)
            else:
                queue.reject(entry)
    if requeue:
        queue.dispatch()
    return answer


def _integer(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise error(400, "bad_request", ["not_integer", value]) from None


def _message(queue: Queue, entry: QueuedMessage, encoding: str, truncate: int | None) -> dict:
    """One message of a get as RabbitMQ renders it (message_count: those left after it)."""
    message = entry.message
    payload = message.body if truncate is None else message.body[:truncate]
    return {
        **payload_json(payload, encoding), "payload_bytes": message.body_size,
        "redelivered": entry.redelivered, "exchange": message.exchange,
        "routing_key": message.routing_key, "message_count": queue.message_count,
        "properties": properties_json(message.props_raw),
    }


async def queue_bindings(request: web.Request) -> web.Response:
    from management.api.bindings import binding_info, default_binding

    queue = queue_of(request)
    items = [default_binding(queue)] + [
        binding_info(b, queue.vhost.name) for b in queue.bindings_in
    ]
    return listing(request, items)


ROUTES = [
    ("GET", "/api/queues", list_queues),
    ("GET", "/api/queues/{vhost}", list_queues),
    ("GET", "/api/queues/{vhost}/{name}", show_queue),
    ("PUT", "/api/queues/{vhost}/{name}", declare_queue),
    ("DELETE", "/api/queues/{vhost}/{name}", delete_queue),
    ("DELETE", "/api/queues/{vhost}/{name}/contents", purge_queue),
    ("POST", "/api/queues/{vhost}/{name}/get", get_messages),
    ("GET", "/api/queues/{vhost}/{name}/bindings", queue_bindings),
]
