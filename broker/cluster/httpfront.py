"""A follower's management port: its own /metrics (the cluster's figures), everything else
passed through to the leader's management API (which answers for the whole cluster: /api/nodes
lists every node). With no leader at the moment: 503; with the leader unreachable: 502.

Each request goes to the leader over a client link of its own (broker/cluster/clientlink.py:
the replication port, authenticated with the cluster secret, carrying the client's address),
as HTTP/1.0: the leader answers it as from the client's address, so its loopback rule for
guest is judged as on this node, and closes the link after the answer. No header a client
sends (X-Forwarded-For or any other) can change the address the leader sees.

A request with this node's local administration credential (management/local_admin.py) goes on
signed with the cluster secret instead; a wrong one is refused here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, generate_latest

from broker.auth import is_loopback
from broker.cluster.clientlink import client_of, open_link
from broker.cluster.view import ClusterView
from broker.listeners import bind_all
from management import local_admin
from management.cluster_metrics import ClusterFigures, cluster_families
from management.metrics import CONTENT_TYPE
from storage.replication import ReplicationRefused, wire

if TYPE_CHECKING:
    from broker.cluster.etcd import Leader
    from broker.config import Config

log = logging.getLogger(__name__)

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
                "content-encoding"}
PASS_TIMEOUT = 30.0  # seconds for the leader's answer


class _Collector:
    def __init__(self, figures: ClusterFigures) -> None:
        self.figures = figures

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        return cluster_families(self.figures)


def _exposition(figures: ClusterFigures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(figures))
    return generate_latest(registry)


class FrontedNode(ClusterView, Protocol):
    """What the front reads of its node (broker/cluster/roles.py's ClusterMember)."""

    config: Config  # its cluster secret
    leader: Leader | None  # the leader it follows; None: none at the moment


class FollowerFront:
    def __init__(self, member: FrontedNode, local_secret: str | None = None) -> None:
        self.member = member
        self.local_secret = local_secret
        self.app = web.Application()
        self.app.router.add_route("GET", "/metrics", self._metrics)
        self.app.router.add_route("*", "/{tail:.*}", self._pass_through)
        self._runner: web.AppRunner | None = None

    async def start(self, hosts: Sequence[str], port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()

        async def bind(host: str) -> None:
            await web.TCPSite(self._runner, host, port, reuse_address=True).start()

        await bind_all(hosts, port, bind, "HTTP (follower: passed through to the leader)")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(_exposition, ClusterFigures.of(self.member))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _pass_through(self, request: web.Request) -> web.StreamResponse:
        leader = self.member.leader
        if leader is None or request.transport is None:
            return web.json_response({"error": "no_leader",
                                      "reason": "the cluster has no leader at the moment"},
                                     status=503)
        authorization = request.headers.get("Authorization")
        local = local_admin.is_local_header(authorization)
        # a client's own X-Warren-Local-Admin never goes on; the local credential neither
        dropped = {*_HOP_HEADERS, local_admin.FORWARD_HEADER.lower(),
                   *(("authorization",) if local else ())}
        headers = [(name, value) for name, value in request.headers.items()
                   if name.lower() not in dropped]
        payload = await request.read()
        secret = self.member.config.cluster_secret
        if local:
            if not local_admin.accepts(authorization, self.local_secret,
                                       is_loopback(request.remote or "")):
                return web.json_response({"error": "not_authorized", "reason": "Login failed"},
                                         status=401)
            # the leader checks the signature over the raw path, as sent
            headers.append((local_admin.FORWARD_HEADER, local_admin.sign_forward(
                secret, self.member.name, request.method, request.raw_path, payload)))
        asked = _request_bytes(request.method, request.raw_path, request.host, headers, payload)
        client = client_of(request.transport, wire.HTTP_SERVICE)
        try:
            async with asyncio.timeout(PASS_TIMEOUT):
                reader, writer = await open_link(
                    tuple(leader.replication), client, secret=secret,
                    epoch=leader.epoch, node_name=self.member.name)
                try:
                    writer.write(asked)
                    answer = await reader.read()  # HTTP/1.0: the leader closes after it
                finally:
                    writer.close()
            status, answer_headers, body = _parse_answer(answer, request.method == "HEAD")
        except (OSError, TimeoutError, EOFError, ReplicationRefused, wire.ProtocolError,
                ValueError) as error:
            return web.json_response({"error": "leader_unreachable",
                                      "reason": str(error) or type(error).__name__},
                                     status=502)
        return web.Response(status=status, body=body, headers=CIMultiDict(
            (name, value) for name, value in answer_headers
            if name.lower() not in _HOP_HEADERS))


def _request_bytes(method: str, target: str, host: str, headers: list[tuple[str, str]],
                   body: bytes) -> bytes:
    """An HTTP/1.0 request (no keep-alive, no chunked answer: the answer ends at EOF)."""
    lines = [f"{method} {target} HTTP/1.0", f"Host: {host}",
             *(f"{name}: {value}" for name, value in headers), f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def _parse_answer(answer: bytes, to_head: bool = False
                  ) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of the leader's whole HTTP/1.0 answer (`to_head`: to a HEAD
    request, whose Content-Length has no body); ValueError if it is not one (cut short, or
    not HTTP)."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("the leader's answer ended before its headers did")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    if not version.startswith("HTTP/") or not status.isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    headers = [(name.strip(), value.strip()) for name, _, value in
               (line.partition(":") for line in lines)]
    length = next((int(value) for name, value in headers
                   if name.lower() == "content-length"), None)
    if to_head:
        return int(status), headers, b""
    if length is not None and len(body) < length:
        raise ValueError("the leader's answer was cut short")
    return int(status), headers, body if length is None else body[:length]
