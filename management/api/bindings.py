"""/api/bindings: list bindings, create and delete them between exchanges and queues."""

from __future__ import annotations

import urllib.parse
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from broker.errors import BrokerError
from broker.exchanges import Binding, Exchange
from broker.queue import Queue
from broker.resources import resource
from broker.vhost import VirtualHost
from management.api.common import (
    access_refused,
    bad_request,
    error,
    json_body,
    json_response,
    listing,
    node_of,
    not_found,
    refusal,
    require_permission,
    vhost_of,
)


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    """RabbitMQ's handle for one binding in URLs: the routing key, plus a hash of arguments."""
    key = urllib.parse.quote(routing_key, safe="") or "~"
    if arguments:
        key += "~" + format(zlib.crc32(repr(sorted(arguments.items())).encode()), "x")
    return key


def binding_info(binding: Binding, vhost: str) -> dict[str, Any]:
    destination = binding.destination
    return {
        "source": binding.source.name, "vhost": vhost,
        "destination": destination.name,
        "destination_type": "exchange" if isinstance(destination, Exchange) else "queue",
        "routing_key": binding.routing_key, "arguments": binding.arguments,
        "properties_key": properties_key(binding.routing_key, binding.arguments),
    }


def default_binding(queue: Queue) -> dict[str, Any]:
    """The implicit binding of every queue to the default exchange, listed as RabbitMQ does."""
    return {
        "source": "", "vhost": queue.vhost.name, "destination": queue.name,
        "destination_type": "queue", "routing_key": queue.name, "arguments": {},
        "properties_key": properties_key(queue.name, {}),
    }


async def list_bindings(request: web.Request) -> web.Response:
    node = node_of(request)
    vhosts = [vhost_of(request)] if "vhost" in request.match_info else list(node.vhosts.values())
    items = []
    for vhost in vhosts:
        items += [default_binding(queue) for queue in vhost.queues.values()]
        for exchange in vhost.exchanges.values():
            items += [binding_info(binding, vhost.name) for binding in exchange.bindings.values()]
    return listing(request, items)


def _endpoints(request: web.Request) -> tuple[Exchange, Queue | Exchange]:
    vhost = vhost_of(request)
    source_name, name = request.match_info["source"], request.match_info["destination"]
    kind = "queue" if request.match_info["kind"] == "q" else "exchange"
    check_binding_names(vhost.name, source_name, kind, name, vhost.exchanges.__contains__,
                        vhost.queues.__contains__)
    destination = (vhost.queues if kind == "queue" else vhost.exchanges)[name]
    return vhost.exchanges[source_name], destination


def check_binding_names(
    vhost: str, source: str, kind: str, destination: str,
    has_exchange: Callable[[str], bool], has_queue: Callable[[str], bool],
) -> None:
    """The API's errors for a binding's ends (kind: "queue" or "exchange"): the default
    exchange as source is refused, a missing destination or source is named."""
    if source in ("", "amq.default"):
        raise access_refused()
    if not (has_queue if kind == "queue" else has_exchange)(destination):
        raise error(404, "not_found", f"no {resource(kind, destination, vhost)}")
    if not has_exchange(source):
        raise error(404, "not_found", f"no {resource('exchange', source, vhost)}")


async def list_between(request: web.Request) -> web.Response:
    try:
        source, destination = _endpoints(request)
    except web.HTTPNotFound:
        return listing(request, [])
    return listing(request, [
        binding_info(binding, request.match_info["vhost"])
        for binding in source.bindings.values() if binding.destination is destination
    ])


async def create_binding(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    source, destination = _endpoints(request)
    body = await json_body(request)
    routing_key = str(body.get("routing_key", ""))
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    _require_binding_permissions(request, vhost, source, destination)
    try:
        vhost.bind(source, destination, routing_key, arguments)
    except BrokerError as failure:
        raise refusal(failure, "reply") from None
    location = (f"{request.match_info['destination']}/"
                f"{urllib.parse.quote(properties_key(routing_key, arguments), safe='~')}")
    return web.Response(status=201, headers={"Location": location})


async def show_binding(request: web.Request) -> web.Response:
    return json_response(binding_info(_binding(request), request.match_info["vhost"]))


async def delete_binding(request: web.Request) -> web.Response:
    vhost, binding = vhost_of(request), _binding(request)
    _require_binding_permissions(request, vhost, binding.source, binding.destination)
    vhost.remove_binding(binding)
    return web.Response(status=204)


def _require_binding_permissions(request: web.Request, vhost: VirtualHost, source: Exchange,
                                 destination: Queue | Exchange) -> None:
    """As queue.bind and exchange.bind check them: write on the destination, read on the
    source."""
    kind = "exchange" if isinstance(destination, Exchange) else "queue"
    require_permission(request, vhost, "write", kind, destination.name)
    require_permission(request, vhost, "read", "exchange", source.name)


def _binding(request: web.Request) -> Binding:
    source, destination = _endpoints(request)
    wanted = request.match_info["props"]
    for binding in list(source.bindings.values()):
        if binding.destination is destination and properties_key(
            binding.routing_key, binding.arguments
        ) == wanted:
            return binding
    raise not_found()


ROUTES = [
    ("GET", "/api/bindings", list_bindings),
    ("GET", "/api/bindings/{vhost}", list_bindings),
    ("GET", "/api/bindings/{vhost}/e/{source}/{kind:[qe]}/{destination}", list_between),
    ("POST", "/api/bindings/{vhost}/e/{source}/{kind:[qe]}/{destination}", create_binding),
    ("GET", "/api/bindings/{vhost}/e/{source}/{kind:[qe]}/{destination}/{props}",
     show_binding),
    ("DELETE", "/api/bindings/{vhost}/e/{source}/{kind:[qe]}/{destination}/{props}",
     delete_binding),
]
