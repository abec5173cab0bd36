"""/api/exchanges: list, show, declare, delete, publish; an exchange's bindings."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

from aiohttp import web
from pamqp import commands as spec

from broker.errors import AccessRefused, BrokerError
from broker.exchanges import Exchange
from broker.message import Message
from broker.resources import is_reserved
from management.api.bindings import binding_info
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
from management.rates import EXCHANGE, EXCHANGE_STATS, RATES_KEY, Rates
from protocol.codec import shortstr


def exchange_name(request: web.Request) -> str:
    name = request.match_info["name"]
    return "" if name == "amq.default" else name


def exchange_info(exchange: Exchange, vhost: str, rates: Rates, ranges: Ranges,
                  single: bool = False) -> dict[str, Any]:
    """An exchange as RabbitMQ 3.10.8 shows it: `policy` only when one applies; at its own
    URL with incoming and outgoing (per-channel and per-queue rates, filled only in RabbitMQ's
    `detailed` rates mode; Warren's is `basic`)."""
    info: dict[str, Any] = {
        "name": exchange.name, "vhost": vhost, "type": exchange.type_name,
        "durable": exchange.durable, "auto_delete": exchange.auto_delete,
        "internal": exchange.internal, "arguments": exchange.arguments,
        "user_who_performed_action": exchange.declared_by,
    }
    stats = rates.message_stats(EXCHANGE, exchange, EXCHANGE_STATS, ranges)
    if stats:
        info["message_stats"] = stats
    if exchange.policy is not None:
        info["policy"] = exchange.policy
    if single:
        info["incoming"], info["outgoing"] = [], []
    return info


def exchange_of(request: web.Request) -> Exchange:
    exchange = vhost_of(request).exchanges.get(exchange_name(request))
    if exchange is None:
        raise not_found()
    return exchange


async def list_exchanges(request: web.Request) -> web.Response:
    if "vhost" in request.match_info:
        vhosts = [vhost_of(request)]
    else:
        vhosts = list(node_of(request).vhosts.values())
    rates = request.app[RATES_KEY]
    ranges = requested_ranges(request, "invalid_range_parameters")
    return listing(request, [
        exchange_info(exchange, vhost.name, rates, ranges) for vhost in vhosts
        for exchange in vhost.exchanges.values()
    ])


async def show_exchange(request: web.Request) -> web.Response:
    return json_response(exchange_info(exchange_of(request), request.match_info["vhost"],
                                       request.app[RATES_KEY], requested_ranges(request), True))


async def declare_exchange(request: web.Request) -> web.Response:
    vhost = vhost_for_write(request)
    body = await json_body(request)
    name = exchange_name(request)
    declaration = exchange_declaration(name, body)
    existed = name in vhost.exchanges
    require_permission(request, vhost, "configure", "exchange", name)
    try:
        exchange = vhost.declare_exchange(name, passive=False, **declaration)
    except BrokerError as failure:
        raise refusal(failure) from None
    if not existed:
        exchange.declared_by = request[USER].name
    return web.Response(status=204 if existed else 201)


def exchange_declaration(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a PUT body (or a definitions entry) declares: vhost.declare_exchange's type_name,
    durable, auto_delete, internal and arguments, or the API's error for a bad name or value."""
    check_name_length("exchange", name)
    if not name or is_reserved(name):
        raise access_refused()
    type_name = body.get("type", "direct")  # an unknown one is refused by declare_exchange
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    return {"type_name": type_name, "durable": parse_bool(body.get("durable", False)),
            "auto_delete": parse_bool(body.get("auto_delete", False)),
            "internal": parse_bool(body.get("internal", False)), "arguments": arguments}


async def delete_exchange(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    exchange = exchange_of(request)
    require_permission(request, vhost, "configure", "exchange", exchange.name)
    try:
        vhost.delete_exchange(exchange.name, request.query.get("if-unused") == "true")
    except AccessRefused:  # the default and amq.* exchanges: RabbitMQ's API says 401
        raise access_refused() from None
    except BrokerError as failure:
        raise refusal(failure) from None
    return web.Response(status=204)


async def publish(request: web.Request) -> web.Response:
    """Publish one message, as the management UI does (the core's VirtualHost.publish);
    answers whether it was routed, or 400 if a queue refused it (x-overflow reject-publish)."""
    vhost = vhost_of(request)
    body = await json_body(request)
    require_keys(body, "properties", "routing_key", "payload", "payload_encoding")
    payload, encoding = body["payload"], body["payload_encoding"]
    if encoding == "base64":
        try:
            raw_body = base64.b64decode(payload, validate=True)
        except ValueError:
            raise error(400, "bad_request", ["not_base64", payload]) from None
    elif encoding == "string":
        raw_body = str(payload).encode()
    else:
        raise error(400, "bad_request", ["unsupported_encoding", encoding])
    props_raw = _properties_raw(body["properties"] or {})
    routing_key = str(body["routing_key"])
    try:
        exchange = vhost.exchange_for_publish(request[USER], exchange_name(request), routing_key)
    except BrokerError as failure:
        raise refusal(failure, "publish") from None
    message = Message(exchange.name, routing_key,
                      shortstr(exchange.name) + shortstr(routing_key), props_raw, raw_body)
    message.persistent = (body["properties"] or {}).get("delivery_mode") == 2
    # RabbitMQ's API publishes on a channel in confirm mode with mandatory=true, and answers
    # once the message is confirmed: a persistent one in durable queues when it is on disk.
    routed, ticket, refused = vhost.publish(exchange, message, mandatory=True, confirm=True,
                                            origin=trace_origin(request))
    api_channel = vhost.closed_traffic.channels  # the vhost's message_stats count it
    api_channel.published += 1
    api_channel.returned += not routed
    if refused:
        raise bad_request("rejected Unable to publish message. Check queue limits.")
    if ticket:
        durable = asyncio.get_running_loop().create_future()
        vhost.store.wal.when_durable(ticket, lambda: durable.done() or durable.set_result(None))
        await durable
    node_of(request).messages_confirmed += 1
    api_channel.confirmed += 1
    return json_response({"routed": bool(routed)})


# The API's property names -> pamqp's Basic.Properties arguments
_PROPERTY_NAMES = {"type": "message_type"}


def _properties_raw(given: dict[str, Any]) -> bytes:
    if not isinstance(given, dict):
        raise bad_request("properties must be an object")
    known = set(spec.Basic.Properties.__slots__)
    fields = {
        _PROPERTY_NAMES.get(name, name): value for name, value in given.items()
        if _PROPERTY_NAMES.get(name, name) in known  # unknown properties are ignored
    }
    for name in ("delivery_mode", "priority"):
        if name in fields and not isinstance(fields[name], int):
            raise error(400, "bad_request", ["not_int", name])
    if isinstance(fields.get("timestamp"), int):
        fields["timestamp"] = datetime.datetime.fromtimestamp(fields["timestamp"], datetime.UTC)
    try:
        return spec.Basic.Properties(**fields).marshal()
    except (TypeError, ValueError) as exc:
        raise bad_request(f"invalid properties: {exc}") from None


async def source_bindings(request: web.Request) -> web.Response:
    exchange = exchange_of(request)
    vhost = request.match_info["vhost"]
    return listing(request, [binding_info(b, vhost) for b in exchange.bindings.values()])


async def destination_bindings(request: web.Request) -> web.Response:
    exchange = exchange_of(request)
    vhost = request.match_info["vhost"]
    return listing(request, [binding_info(b, vhost) for b in exchange.bindings_in])


ROUTES = [
    ("GET", "/api/exchanges", list_exchanges),
    ("GET", "/api/exchanges/{vhost}", list_exchanges),
    ("GET", "/api/exchanges/{vhost}/{name}", show_exchange),
    ("PUT", "/api/exchanges/{vhost}/{name}", declare_exchange),
    ("DELETE", "/api/exchanges/{vhost}/{name}", delete_exchange),
    ("POST", "/api/exchanges/{vhost}/{name}/publish", publish),
    ("GET", "/api/exchanges/{vhost}/{name}/bindings/source", source_bindings),
    ("GET", "/api/exchanges/{vhost}/{name}/bindings/destination", destination_bindings),
]
