"""/api/trace-sessions: Warren's own endpoints (RabbitMQ has none) behind the UI's Trace page.

POST `/api/trace-sessions/{vhost}` with optional `exchange`, `queue` and `routing_key` (a topic
pattern) starts a session (broker/tracesessions.py) and switches the vhost's firehose on if it
was off; GET `/api/trace-sessions/{vhost}/{id}?since=N` returns the events after sequence
number N; DELETE ends it, and the last session to end switches off the firehose it switched on
(as does a session that ends by itself, unread for two minutes). Administrators only, as
switching tracing is."""

from __future__ import annotations

from aiohttp import web

from broker.node import Node
from broker.tracesessions import TraceSession
from management.api.common import (
    bad_request,
    json_body,
    json_response,
    node_of,
    not_found,
)
from management.auth import require_tag

# Vhosts whose firehose a session switched on: switched off when their last session ends.
_switched_on: set[str] = set()


def _end(node: Node, session: TraceSession) -> None:
    vhost = node.vhosts.get(session.vhost)
    if vhost is not None and session in vhost.trace_sessions:
        vhost.trace_sessions.remove(session)
    if (vhost is None or not vhost.trace_sessions) and session.vhost in _switched_on:
        _switched_on.discard(session.vhost)
        node.set_tracing(session.vhost, False)


async def list_sessions(request: web.Request) -> web.Response:
    require_tag(request)
    return json_response([session.describe() for vhost in node_of(request).vhosts.values()
                          for session in vhost.trace_sessions])


async def start_session(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    vhost = node.vhosts.get(request.match_info["vhost"])
    if vhost is None:
        raise not_found()
    body = await json_body(request)
    filters = {key: body.get(key) for key in ("exchange", "queue", "routing_key")}
    for key, value in filters.items():
        if value is not None and not isinstance(value, str):
            raise bad_request(f"{key} must be a string")
    session = TraceSession(vhost.name, **filters, on_end=lambda ended: _end(node, ended))
    vhost.trace_sessions.append(session)
    if not vhost.tracing:
        _switched_on.add(vhost.name)
        node.set_tracing(vhost.name, True)
    return json_response(session.describe(), status=201)


def _session_of(request: web.Request) -> TraceSession:
    vhost = node_of(request).vhosts.get(request.match_info["vhost"])
    wanted = request.match_info["id"]
    for session in vhost.trace_sessions if vhost is not None else ():
        if str(session.id) == wanted:
            return session
    raise not_found()


async def read_session(request: web.Request) -> web.Response:
    require_tag(request)
    session = _session_of(request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise bad_request("since must be an integer") from None
    return json_response({"session": session.describe(), "events": session.read(since)})


async def end_session(request: web.Request) -> web.Response:
    require_tag(request)
    _end(node_of(request), _session_of(request))
    return web.Response(status=204)


ROUTES = [
    ("GET", "/api/trace-sessions", list_sessions),
    ("POST", "/api/trace-sessions/{vhost}", start_session),
    ("GET", "/api/trace-sessions/{vhost}/{id}", read_session),
    ("DELETE", "/api/trace-sessions/{vhost}/{id}", end_session),
]
