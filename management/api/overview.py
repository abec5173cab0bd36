"""Node-wide views: /api/overview, /api/nodes, /api/whoami, health checks, aliveness test."""

from __future__ import annotations

import os
import platform
import time

from aiohttp import web

from broker import __version__
from broker.exchanges import EXCHANGE_TYPES
from management.api.common import json_response, node_of, vhost_of
from management.auth import USER_KEY
from management.rates import RATES_KEY, message_stats

RABBITMQ_VERSION = "3.10.8"  # the version whose behaviour Warren follows


def node_name() -> str:
    return f"warren@{platform.node()}"


async def overview(request: web.Request) -> web.Response:
    node = node_of(request)
    queues = [queue for vhost in node.vhosts.values() for queue in vhost.queues.values()]
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked_count for queue in queues)
    config = node.config
    return json_response({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "exchange_types": [
            {"name": name, "description": "", "enabled": True} for name in EXCHANGE_TYPES
        ],
        "sample_retention_policies": {"global": [600, 3600], "basic": [600], "detailed": [600]},
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Warren",
        "product_version": __version__,
        "erlang_version": f"Python {platform.python_version()}",
        "erlang_full_version": f"Python {platform.python_version()}",
        "cluster_name": node_name(),
        "node": node_name(),
        "disable_stats": False,
        "enable_queue_totals": True,
        "statistics_db_event_queue": 0,
        "message_stats": message_stats(node, request.app[RATES_KEY]),
        "churn_rates": {},
        "queue_totals": {
            "messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked,
        },
        "object_totals": {
            "channels": sum(len(c.channels) for c in node.connections),
            "connections": len(node.connections),
            "consumers": sum(len(queue.consumers) for queue in queues),
            "exchanges": sum(len(vhost.exchanges) for vhost in node.vhosts.values()),
            "queues": len(queues),
        },
        "listeners": [
            {"node": node_name(), "protocol": "amqp", "ip_address": config.host,
             "port": config.port, "socket_opts": {}},
            {"node": node_name(), "protocol": "http", "ip_address": config.host,
             "port": config.management_port, "socket_opts": {}},
        ],
        "contexts": [{"node": node_name(), "description": "RabbitMQ Management",
                      "path": "/", "port": str(config.management_port)}],
    })


async def nodes(request: web.Request) -> web.Response:
    node = node_of(request)
    return json_response([{
        "name": node_name(), "type": "disc", "running": True, "being_drained": False,
        "uptime": int((time.time() - node.started_at) * 1000),
        "mem_used": resident_memory(), "mem_alarm": False, "disk_free_alarm": False,
        "partitions": [], "applications": [], "os_pid": str(_pid()),
        "processors": _cpus(),
    }])


async def whoami(request: web.Request) -> web.Response:
    user = request[USER_KEY]
    return json_response({"name": user.name, "tags": list(user.tags)})


async def alarms(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def aliveness(request: web.Request) -> web.Response:
    vhost_of(request)
    return json_response({"status": "ok"})


def _pid() -> int:
    return os.getpid()


def _cpus() -> int:
    return os.cpu_count() or 1


def resident_memory() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


ROUTES = [
    ("GET", "/api/overview", overview),
    ("GET", "/api/nodes", nodes),
    ("GET", "/api/whoami", whoami),
    ("GET", "/api/health/checks/alarms", alarms),
    ("GET", "/api/health/checks/local-alarms", alarms),
    ("GET", "/api/aliveness-test/{vhost}", aliveness),
]
