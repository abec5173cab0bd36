"""A follower's management port: its own /metrics (the cluster's figures), everything else
passed through to the leader's management API (which answers for the whole cluster: /api/nodes
lists every node). With no leader at the moment: 503. A request with this node's local
administration credential goes on signed with the cluster secret instead
(management/local_admin.py); a wrong one is refused here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from yarl import URL

from broker.auth import is_loopback
from broker.listeners import bind_all
from management import local_admin
from management.cluster_metrics import ClusterFigures, cluster_families
from management.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from broker.cluster.etcd import Leader
    from broker.cluster.view import ClusterView

log = logging.getLogger(__name__)

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
                "content-encoding"}


class _Collector:
    def __init__(self, figures: ClusterFigures) -> None:
        self.figures = figures

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        return cluster_families(self.figures)


def _exposition(figures: ClusterFigures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(figures))
    return generate_latest(registry)


class FollowerFront:
    def __init__(self, member: ClusterView, local_secret: str | None = None,
                 cluster_secret: str | None = None) -> None:
        self.member = member
        self.local_secret, self.cluster_secret = local_secret, cluster_secret
        self.app = web.Application()
        self.app.router.add_route("GET", "/metrics", self._metrics)
        self.app.router.add_route("*", "/{tail:.*}", self._pass_through)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, hosts: Sequence[str], port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                              auto_decompress=False)

        async def bind(host: str) -> None:
            await web.TCPSite(self._runner, host, port, reuse_address=True).start()

        await bind_all(hosts, port, bind, "HTTP (follower: passed through to the leader)")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(_exposition, ClusterFigures.of(self.member))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _pass_through(self, request: web.Request) -> web.StreamResponse:
        leader: Leader | None = getattr(self.member, "leader", None)
        if leader is None:
            return web.json_response({"error": "no_leader",
                                      "reason": "the cluster has no leader at the moment"},
                                     status=503)
        host, port = leader.http
        # as received: the leader checks a local administrator's signature over the raw path
        url = URL(f"http://{host}:{port}{request.raw_path}", encoded=True)
        authorization = request.headers.get("Authorization")
        local = local_admin.is_local_header(authorization)
        # a client's own X-Warren-Local-Admin never goes on; the local credential neither
        dropped = {*_HOP_HEADERS, local_admin.FORWARD_HEADER.lower(),
                   *(("authorization",) if local else ())}
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in dropped}
        payload = await request.read()
        if local:
            if self.cluster_secret is None or not local_admin.accepts(
                    authorization, self.local_secret, is_loopback(request.remote or "")):
                return web.json_response({"error": "not_authorized", "reason": "Login failed"},
                                         status=401)
            headers[local_admin.FORWARD_HEADER] = local_admin.sign_forward(
                self.cluster_secret, self.member.name, request.method, request.raw_path,
                payload)
        try:
            async with self._session.request(request.method, url, headers=headers,
                                             data=payload) as reply:
                body = await reply.read()
                return web.Response(
                    status=reply.status, body=body,
                    headers={name: value for name, value in reply.headers.items()
                             if name.lower() not in _HOP_HEADERS})
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.json_response({"error": "leader_unreachable", "reason": str(error)},
                                     status=502)
