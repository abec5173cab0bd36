"""Node-wide views: /api/overview, /api/nodes, /api/whoami, health checks (alarms included),
aliveness test; the node's memory high watermark and disk free limit set at run time."""

from __future__ import annotations

import platform

from aiohttp import web

from broker import RABBITMQ_VERSION, __version__, tracing
from broker.alarms import DISK, MEMORY
from broker.config import Config, parse_size
from broker.errors import BrokerError
from broker.exchanges import EXCHANGE_TYPES
from broker.message import Message
from broker.node import Node, node_name
from broker.node_figures import http_contexts, node_description, node_figures
from management.api.common import (
    Ranges,
    access_refused,
    bad_request,
    json_body,
    json_response,
    node_of,
    not_found,
    refusal,
    requested_ranges,
    trace_origin,
    vhost_of,
)
from management.auth import USER_KEY, require_tag
from management.history import SHOWN_RETENTION
from management.rates import (
    CHURN,
    NODE,
    NODE_GAUGES,
    NODE_STATS,
    QUEUE_LENGTHS,
    RATES_KEY,
    Rates,
    io_figures,
)
from protocol.codec import shortstr

HEALTH_CHECK_FAILURE_STATUS = 503
_ALARM_RESOURCES = ((DISK, "disk space"), (MEMORY, "memory"))  # RabbitMQ's names and order


async def overview(request: web.Request) -> web.Response:
    node = node_of(request)
    queues = [queue for vhost in node.vhosts.values() for queue in vhost.queues.values()]
    config = node.config
    rates, ranges = request.app[RATES_KEY], requested_ranges(request)
    return json_response({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": config.rates_mode,
        "exchange_types": [
            {"name": name, "description": "", "enabled": True} for name in EXCHANGE_TYPES
        ],
        "sample_retention_policies": SHOWN_RETENTION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Warren",
        "product_version": __version__,
        "release_series_support_status": "supported",
        "erlang_version": f"Python {platform.python_version()}",
        "erlang_full_version": f"Python {platform.python_version()}",
        "cluster_name": cluster_name_of(node),
        "node": node_name(),
        "disable_stats": False,
        "enable_queue_totals": True,
        "statistics_db_event_queue": 0,
        "message_stats": rates.message_stats(NODE, node, NODE_STATS, ranges),
        "churn_rates": rates.figures(CHURN, node, CHURN.names, ranges),
        "queue_totals": rates.figures(NODE, node, QUEUE_LENGTHS, ranges) if queues else {},
        "object_totals": {
            "channels": sum(len(c.channels) for c in node.connections),
            "connections": len(node.connections),
            "consumers": sum(len(queue.consumers) for queue in queues),
            "exchanges": sum(len(vhost.exchanges) for vhost in node.vhosts.values()),
            "queues": len(queues),
        },
        "listeners": [
            {"node": node_name(), "protocol": protocol, "ip_address": host, "port": port,
             "socket_opts": {}}
            for protocol, host, port in listeners(config)
        ],
        "contexts": [{"node": node_name(), **context} for context in http_contexts(config)],
    })


def listeners(config: Config) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of each listener, named as RabbitMQ names them."""
    found = [("amqp", host, config.port) for host in config.host]
    if config.amqps_enabled:
        found += [("amqp/ssl", host, config.amqps_port) for host in config.amqps_host]
    protocol = "https" if config.management_https else "http"
    found += [(protocol, host, config.management_port) for host in config.management_host]
    return found


def cluster_name_of(node: Node) -> str:
    """RabbitMQ names a cluster after its first node; a Warren cluster has `cluster.name`."""
    return node.cluster.cluster_name if node.cluster is not None else node_name()


async def nodes(request: web.Request) -> web.Response:
    node = node_of(request)
    return json_response([_this_node(node, request.app[RATES_KEY], requested_ranges(request)),
                          *_other_nodes(node)])


def _other_nodes(node: Node) -> list[dict]:
    """The other nodes of the cluster, as etcd lists them, each with the figures it published
    in its node key (a node that is down, or has not published yet, has none)."""
    if node.cluster is None:
        return []
    return [{**_node_object(other.name), "running": other.running,
             "cluster_role": other.role, **(other.figures if other.running else {})}
            for other in node.cluster.nodes() if other.name != node_name()]


def _node_object(name: str) -> dict:
    """The keys of a node object that are the same for every Warren node."""
    return {
        "name": name, "type": "disc", "running": True, "being_drained": False,
        "rates_mode": "basic", "exchange_types": [
            {"name": kind, "description": "", "enabled": True} for kind in EXCHANGE_TYPES
        ],
        "partitions": [], "applications": [],
    }


def _this_node(node: Node, rates: Rates, ranges: Ranges) -> dict:
    """This node's object: the keys of every node, its configuration, its figures
    (node_figures, as a cluster node publishes them) with the sampled gauges' `*_details`,
    its storage's file I/O (io_*) and its churn figures."""
    config = node.config
    role = {"cluster_role": node.cluster.role} if node.cluster is not None else {}
    gauges = rates.figures(NODE_GAUGES, node, NODE_GAUGES.names, ranges)
    return {
        **_node_object(node_name()), **role, "rates_mode": config.rates_mode,
        **node_description(config),
        **node_figures(node.alarms, node.started_at, len(node.connections)),
        **gauges,
        **io_figures(rates, node),
        **rates.figures(CHURN, node, CHURN.names, ranges),
    }


async def health_ok(request: web.Request) -> web.Response:
    """The vhosts check: a Warren node's vhosts all run while the node does."""
    return json_response({"status": "ok"})


async def single_node_ok(request: web.Request) -> web.Response:
    """The quorum- and mirror-critical checks: a Warren node is a cluster of one, which no
    other node depends on (RabbitMQ answers a single node the same)."""
    return json_response({"status": "ok", "reason": "single node cluster"})


async def port_listener(request: web.Request) -> web.Response:
    ports = [port for _, _, port in listeners(node_of(request).config)]
    try:
        port = int(request.match_info["port"])
    except ValueError:
        port = -1
    if port in ports:
        return json_response({"status": "ok", "port": port})
    return json_response({"status": "failed", "reason": "No active listener",
                          "missing": port, "ports": ports}, status=503)


async def protocol_listener(request: web.Request) -> web.Response:
    protocol = request.match_info["protocol"]
    active = [name for name, _, _ in listeners(node_of(request).config)]
    aliases = {"amqp091": "amqp", "amqp0-9-1": "amqp", "amqps": "amqp/ssl"}
    if aliases.get(protocol, protocol) in active:
        return json_response({"status": "ok", "protocol": protocol})
    return json_response({"status": "failed", "reason": "No active listener",
                          "missing": protocol, "protocols": active}, status=503)


async def show_node(request: web.Request) -> web.Response:
    node = node_of(request)
    name = request.match_info["name"]
    if name == node_name():
        return json_response(_this_node(node, request.app[RATES_KEY], requested_ranges(request)))
    for other in _other_nodes(node):
        if other["name"] == name:
            return json_response(other)
    raise not_found()


async def cluster_name(request: web.Request) -> web.Response:
    return json_response({"name": cluster_name_of(node_of(request))})


async def empty_list(request: web.Request) -> web.Response:
    return json_response([])


async def auth_settings(request: web.Request) -> web.Response:
    return json_response({"enable_uaa": False, "oauth_enabled": False})


async def whoami(request: web.Request) -> web.Response:
    user = request[USER_KEY]
    return json_response({"name": user.name, "tags": list(user.tags)})


def _alarms_check(node: Node, reason: str) -> web.Response:
    """RabbitMQ's answer: 200 {"status": "ok"}, or 503 with the alarms in effect."""
    active = node.alarms.active
    if not active:
        return json_response({"status": "ok"})
    return json_response({
        "alarms": [{"node": node_name(), "resource": name}
                   for alarm, name in _ALARM_RESOURCES if alarm in active],
        "reason": reason, "status": "failed",
    }, status=HEALTH_CHECK_FAILURE_STATUS)


async def alarms(request: web.Request) -> web.Response:
    return _alarms_check(node_of(request), "There are alarms in effect in the cluster")


async def local_alarms(request: web.Request) -> web.Response:
    return _alarms_check(node_of(request), "There are alarms in effect on the node")


async def _settings(request: web.Request) -> dict:
    """The JSON object of a PUT to a node setting, by an administrator, to this node."""
    require_tag(request, "administrator")
    if request.match_info["name"] != node_name():
        raise not_found()
    return await json_body(request)


async def set_memory_high_watermark(request: web.Request) -> web.Response:
    """Warren's `rabbitmqctl set_vm_memory_high_watermark`: {"fraction": 0.4} or
    {"absolute": "1GB"} (bytes or RabbitMQ's units); not kept across a restart."""
    body = await _settings(request)
    alarms = node_of(request).alarms
    try:
        if "absolute" in body:
            alarms.set_memory_high_watermark(absolute=parse_size(body["absolute"]))
        elif isinstance(body.get("fraction"), int | float) and not isinstance(
            body["fraction"], bool
        ):
            alarms.set_memory_high_watermark(fraction=float(body["fraction"]))
        else:
            raise bad_request("expected {\"fraction\": <0.0..1.0>} or {\"absolute\": <size>}")
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return web.Response(status=204)


async def set_disk_free_limit(request: web.Request) -> web.Response:
    """Warren's `rabbitmqctl set_disk_free_limit`: {"limit": "1GB"} (bytes or RabbitMQ's units)
    or {"mem_relative": 1.5} (times the usable memory); not kept across a restart."""
    body = await _settings(request)
    alarms = node_of(request).alarms
    try:
        if "limit" in body:
            limit = parse_size(body["limit"])
        elif isinstance(body.get("mem_relative"), int | float) and not isinstance(
            body["mem_relative"], bool
        ) and body["mem_relative"] >= 0:
            limit = round(body["mem_relative"] * alarms.usable_memory)
        else:
            raise bad_request("expected {\"limit\": <size>} or {\"mem_relative\": <fraction>}")
        await alarms.set_disk_free_limit(limit)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return web.Response(status=204)


ALIVENESS_QUEUE = "aliveness-test"
_NO_PROPERTIES = b"\x00\x00"  # a content header's property flags with none set


async def aliveness(request: web.Request) -> web.Response:
    """RabbitMQ's round trip: declare the vhost's `aliveness-test` queue, publish a message to
    it through the default exchange and get it back, as the user of the request."""
    vhost, node = vhost_of(request), node_of(request)
    user = request[USER_KEY]
    if node.access.permission(user.name, vhost.name) is None:
        raise access_refused()
    try:
        vhost.check_permission(user, "configure", "queue", ALIVENESS_QUEUE)
        queue = vhost.declare_queue(ALIVENESS_QUEUE, None, passive=False, durable=False,
                                    exclusive=False, auto_delete=False, arguments={})
        vhost.check_permission(user, "write", "exchange", "")
        message = Message("", ALIVENESS_QUEUE, shortstr("") + shortstr(ALIVENESS_QUEUE),
                          _NO_PROPERTIES, b"test_message")
        vhost.publish(vhost.default_exchange, message, origin=trace_origin(request))
        api_channel = vhost.closed_traffic.channels  # the vhost's message_stats count both
        api_channel.published += 1
        vhost.check_permission(user, "read", "queue", ALIVENESS_QUEUE)
    except BrokerError as failure:
        raise refusal(failure, "amqp") from None
    entry = queue.get(no_ack=True)  # a basic.get with no_ack, counted as one
    if entry is None:
        api_channel.gets_empty += 1
        return json_response({"status": "failed", "reason": "aliveness-test queue is empty"},
                             status=HEALTH_CHECK_FAILURE_STATUS)
    api_channel.count_get(entry.redelivered, no_ack=True)
    if vhost.tracing:
        tracing.delivered(vhost, queue, entry, trace_origin(request), get=True)
    return json_response({"status": "ok"})


ROUTES = [
    ("GET", "/api/overview", overview),
    ("GET", "/api/nodes", nodes),
    ("GET", "/api/nodes/{name}", show_node),
    ("PUT", "/api/nodes/{name}/memory-high-watermark", set_memory_high_watermark),
    ("PUT", "/api/nodes/{name}/disk-free-limit", set_disk_free_limit),
    ("GET", "/api/whoami", whoami),
    ("GET", "/api/cluster-name", cluster_name),
    ("GET", "/api/auth", auth_settings),
    *(("GET", f"/api/{name}", empty_list) for name in (
        "global-parameters", "vhost-limits",
    )),
    ("GET", "/api/health/checks/alarms", alarms),
    ("GET", "/api/health/checks/local-alarms", local_alarms),
    ("GET", "/api/health/checks/virtual-hosts", health_ok),
    ("GET", "/api/health/checks/node-is-quorum-critical", single_node_ok),
    ("GET", "/api/health/checks/node-is-mirror-sync-critical", single_node_ok),
    ("GET", "/api/health/checks/port-listener/{port}", port_listener),
    ("GET", "/api/health/checks/protocol-listener/{protocol}", protocol_listener),
    ("GET", "/api/aliveness-test/{vhost}", aliveness),
]
