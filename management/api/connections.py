"""/api/connections, /api/channels, /api/consumers; closing a connection with 320."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from broker.channel import Channel
from broker.connection import Connection
from broker.consumer import Consumer
from broker.tls import distinguished_name, peer_certificate
from management.api.common import (
    USER,
    Ranges,
    json_response,
    listing,
    node_of,
    not_found,
    requested_ranges,
    sees_every_vhost,
    vhost_of,
)
from management.auth import require_tag
from management.rates import CHANNEL, CHANNEL_STATS, CONNECTION, RATES_KEY, Rates
from protocol.session import State


def channel_name(channel: Channel) -> str:
    """RabbitMQ's name for a channel: its connection's name and its number."""
    return f"{channel.connection.display_name} ({channel.number})"


def _peer(connection: Connection) -> tuple[str, int]:
    return connection.peer or ("", 0)


def connection_state(connection: Connection) -> str:
    """RabbitMQ's state: "blocked" once it published during an alarm, "blocking" while an alarm
    is in effect and it has not published (yet), else "running" (or "closing")."""
    if connection.blocked:
        return "blocked"
    if connection.state is State.OPEN:
        return "blocking" if connection.node.alarms.active else "running"
    return connection.state.value


def connection_info(connection: Connection, rates: Rates, ranges: Ranges) -> dict[str, Any]:
    peer_host, peer_port = _peer(connection)
    transport = connection.transport
    local_host, local_port = connection.local or ("", 0)
    return {
        "name": connection.display_name, "node": connection.node_name, "type": "network",
        "protocol": "AMQP 0-9-1", "state": connection_state(connection),
        "user": connection.user.name, "user_who_performed_action": connection.user.name,
        "vhost": connection.vhost.name,
        "host": local_host, "port": local_port, "peer_host": peer_host, "peer_port": peer_port,
        "channels": len(connection.channels), "channel_max": connection.channel_max,
        "frame_max": connection.frame_max, "timeout": connection.heartbeat,
        "auth_mechanism": connection.auth_mechanism, **_tls_info(connection),
        "client_properties": connection.client_properties,
        "user_provided_name": connection.client_properties.get("connection_name"),
        **rates.figures(CONNECTION, connection, ("recv_oct", "send_oct"), ranges),
        "recv_cnt": transport.recv_cnt, "send_cnt": transport.send_cnt,
        "send_pend": transport.send_pending,
        "connected_at": int(connection.connected_at * 1000),
    }


def _tls_info(connection: Connection) -> dict[str, Any]:
    """RabbitMQ's ssl_* and peer_cert_* fields: null on a plain TCP connection."""
    tls = connection.transport.tls
    if tls is None:
        return {"ssl": False, "ssl_protocol": None, "ssl_cipher": None, "ssl_hash": None,
                "ssl_key_exchange": None, "peer_cert_subject": None, "peer_cert_issuer": None,
                "peer_cert_validity": None}
    cert = peer_certificate(tls) or {}
    cipher = (tls.cipher() or ("",))[0]
    return {
        "ssl": True, "ssl_protocol": (tls.version() or "").lower(), "ssl_cipher": cipher,
        **_cipher_parts(cipher),
        "peer_cert_subject": distinguished_name(cert.get("subject")),
        "peer_cert_issuer": distinguished_name(cert.get("issuer")),
        "peer_cert_validity": (f"{cert['notBefore']} - {cert['notAfter']}"
                               if "notBefore" in cert and "notAfter" in cert else None),
    }


def _cipher_parts(cipher: str) -> dict[str, str]:
    """The key exchange and hash of an OpenSSL cipher suite name, in RabbitMQ's lower case
    (`ECDHE-RSA-AES256-GCM-SHA384`: ecdhe_rsa, sha384); TLS 1.3 suites (`TLS_AES_...`) name
    no key exchange ("any", as Erlang's ssl says)."""
    parts = cipher.replace("_", "-").split("-")
    hash_name = parts[-1].lower() if parts and parts[-1].startswith("SHA") else ""
    if cipher.startswith("TLS_"):
        return {"ssl_key_exchange": "any", "ssl_hash": hash_name}
    exchange = [part.lower() for part in parts[:2] if part in ("ECDHE", "DHE", "RSA", "ECDSA")]
    return {"ssl_key_exchange": "_".join(exchange), "ssl_hash": hash_name}


def channel_info(channel: Channel, rates: Rates, ranges: Ranges,
                 single: bool = False) -> dict[str, Any]:
    """A channel as RabbitMQ 3.10.8 shows it; at its own URL with consumer_details, and
    publishes and deliveries (per-exchange and per-queue rates, filled only in RabbitMQ's
    `detailed` rates mode; Warren's is `basic`)."""
    connection, deliveries = channel.connection, channel.deliveries
    confirms, transaction = channel.confirms, channel.transaction
    info: dict[str, Any] = {
        "name": channel_name(channel), "number": channel.number,
        "node": connection.node_name, "user": connection.user.name,
        "vhost": connection.vhost.name, "user_who_performed_action": connection.user.name,
        "state": "running", "confirm": confirms.active,
        "transactional": transaction.active,
        "consumer_count": len(deliveries.consumers),
        "messages_unacknowledged": len(deliveries.tags),
        "messages_unconfirmed": confirms.published_seq - confirms.confirmed_upto,
        "messages_uncommitted": len(transaction.publishes),
        "acks_uncommitted": sum(outcome.acked for outcome in transaction.outcomes),
        "pending_raft_commands": 0,  # (Warren's quorum queues apply commands at once)
        "prefetch_count": deliveries.default_prefetch, "global_prefetch_count":
        deliveries.global_prefetch, "connection_details": {
            "name": connection.display_name, "peer_host": _peer(connection)[0],
            "peer_port": _peer(connection)[1],
        },
    }
    stats = rates.message_stats(CHANNEL, channel, CHANNEL_STATS, ranges)
    if stats:
        info["message_stats"] = stats
    idle_since = rates.idle_since(CHANNEL, channel)
    if idle_since is not None:
        info["idle_since"] = idle_since
    if single:
        info["consumer_details"] = [consumer_info(consumer)
                                    for consumer in deliveries.consumers.values()]
        info["publishes"], info["deliveries"] = [], []
    return info


def _connections(request: web.Request) -> list[Connection]:
    """Open connections; a management user sees only their own (as in RabbitMQ)."""
    connections = [c for c in node_of(request).connections if c.user is not None]
    if not sees_every_vhost(request):
        connections = [c for c in connections if c.user.name == request[USER].name]
    return connections


async def list_connections(request: web.Request) -> web.Response:
    connections = _connections(request)
    if "vhost" in request.match_info:
        connections = [c for c in connections if c.vhost.name == request.match_info["vhost"]]
    rates, ranges = request.app[RATES_KEY], requested_ranges(request)
    return listing(request, [connection_info(c, rates, ranges) for c in connections])


def channel_of(request: web.Request) -> Channel:
    for connection in _connections(request):
        for channel in connection.channels.values():
            if channel_name(channel) == request.match_info["channel"]:
                return channel
    raise not_found()


async def show_channel(request: web.Request) -> web.Response:
    return json_response(channel_info(channel_of(request), request.app[RATES_KEY],
                                      requested_ranges(request), True))


def consumer_info(consumer: Consumer) -> dict[str, Any]:
    """A consumer as /api/consumers and a queue's or channel's consumer_details show it."""
    channel = cast(Channel, consumer.target)  # AMQP channels are the only consumers today
    connection = channel.connection
    line = consumer.queue.consumers
    if not line.single_active:
        active, status = True, "up"
    elif consumer is line.active:
        active, status = True, "single_active"
    else:  # standing by until the active one goes
        active, status = False, "waiting"
    return {
        "consumer_tag": consumer.tag, "exclusive": consumer.exclusive,
        "ack_required": not consumer.no_ack, "prefetch_count": consumer.prefetch,
        "active": active, "activity_status": status, "arguments": consumer.arguments,
        "queue": {"name": consumer.queue.name, "vhost": consumer.queue.vhost.name},
        "channel_details": {
            "name": channel_name(channel), "number": channel.number,
            "connection_name": connection.display_name, "peer_host": _peer(connection)[0],
            "peer_port": _peer(connection)[1], "user": connection.user.name,
            "node": connection.node_name,
        },
    }


def connection_of(request: web.Request) -> Connection:
    for connection in _connections(request):
        if connection.display_name == request.match_info["name"]:
            return connection
    raise not_found()


async def show_connection(request: web.Request) -> web.Response:
    return json_response(connection_info(connection_of(request), request.app[RATES_KEY],
                                         requested_ranges(request)))


async def close_connection(request: web.Request) -> web.Response:
    require_tag(request)
    connection = connection_of(request)
    reason = request.headers.get("X-Reason", "Closed via management plugin")
    connection.close_forced(reason)
    return web.Response(status=204)


async def list_channels(request: web.Request) -> web.Response:
    connections = _connections(request)
    if "name" in request.match_info:
        connections = [connection_of(request)]
    elif "vhost" in request.match_info:
        connections = [c for c in connections if c.vhost.name == request.match_info["vhost"]]
    rates, ranges = request.app[RATES_KEY], requested_ranges(request)
    return listing(request, [
        channel_info(channel, rates, ranges) for connection in connections
        for channel in connection.channels.values()
    ])


async def list_consumers(request: web.Request) -> web.Response:
    if "vhost" in request.match_info:
        vhost_of(request)  # an unknown vhost is RabbitMQ's 404
    items = []
    for connection in _connections(request):
        if "vhost" in request.match_info and connection.vhost.name != request.match_info["vhost"]:
            continue
        for channel in connection.channels.values():
            items += [consumer_info(consumer) for consumer in channel.deliveries.consumers.values()]
    return listing(request, items)


ROUTES = [
    ("GET", "/api/connections", list_connections),
    ("GET", "/api/vhosts/{vhost}/connections", list_connections),
    ("GET", "/api/connections/{name}", show_connection),
    ("DELETE", "/api/connections/{name}", close_connection),
    ("GET", "/api/channels", list_channels),
    ("GET", "/api/connections/{name}/channels", list_channels),
    ("GET", "/api/channels/{channel}", show_channel),
    ("GET", "/api/vhosts/{vhost}/channels", list_channels),
    ("GET", "/api/consumers", list_consumers),
    ("GET", "/api/consumers/{vhost}", list_consumers),
]
