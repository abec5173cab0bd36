"""The management HTTP server: routes of every API module, auth, rates sampling; started and
stopped with the broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from broker.listeners import bind_all, show
from broker.node import Node
from management import metrics, metrics_detailed, ui
from management.api import (
    access,
    bindings,
    connections,
    definitions,
    exchanges,
    overview,
    policies,
    queues,
    topic_permissions,
    trace_sessions,
)
from management.api.common import MAX_BODY_SIZE, NODE_KEY
from management.auth import LOCAL_SECRET, authenticate, rabbitmq_errors
from management.rates import RATES_KEY, Rates, sample_forever
from management.replicated import replicated_writes

log = logging.getLogger(__name__)

ROUTE_MODULES = (overview, queues, exchanges, bindings, access, topic_permissions, policies,
                 connections, definitions, trace_sessions, metrics, metrics_detailed, ui)


def build_app(node: Node, local_secret: str | None = None) -> web.Application:
    """The API; `local_secret` is this process's local administration secret
    (management/local_admin.py), None to accept none."""
    app = web.Application(middlewares=[rabbitmq_errors, authenticate, replicated_writes],
                          client_max_size=MAX_BODY_SIZE)
    app[NODE_KEY] = node
    if local_secret is not None:
        app[LOCAL_SECRET] = local_secret
    app[RATES_KEY] = Rates()
    for module in ROUTE_MODULES:
        for method, path, handler in module.ROUTES:
            app.router.add_route(method, path, handler)
    return app


class ManagementServer:
    def __init__(self, node: Node, local_secret: str | None = None) -> None:
        self.node = node
        self.app = build_app(node, local_secret)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._sampler: asyncio.Task | None = None

    async def start(self, hosts: Sequence[str], port: int,
                    tls: ssl.SSLContext | None = None) -> None:
        await self._runner.setup()

        async def bind(host: str) -> None:
            await web.TCPSite(self._runner, host, port, ssl_context=tls,
                              reuse_address=True).start()

        await bind_all(hosts, port, bind, "HTTPS" if tls else "HTTP")
        self._sampler = asyncio.create_task(sample_forever(self.node, self.app[RATES_KEY]))
        log.info("management API and /metrics listening on %s://%s",
                 "https" if tls else "http", ", ".join(show(host, port) for host in hosts))

    def passed_on(self, remote: str, keep: object = None) -> asyncio.Protocol | None:
        """A protocol for an HTTP connection a cluster's follower passed on over a client link
        (broker/cluster/clientlink.py), whose requests are served as from `remote`, the
        client's address as the follower saw it: the loopback rule of `loopback_users` is
        judged as on the node the client asked. None before the server is set up."""
        served = self._runner.server
        if served is None:
            return None
        return web.Server(served.request_handler, access_log=None,
                          request_factory=_AsFromClient(served, remote, keep))()

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await self._runner.cleanup()


class _AsFromClient:
    """The request factory of a passed-on connection: aiohttp's requests, with the client's
    address as `remote`."""

    def __init__(self, served: web.Server, remote: str, keep: object) -> None:
        self.served = served
        self.remote = remote
        self.keep = keep  # e.g. the link's stream writer: it must live as long as the socket

    def __call__(self, *parts: Any) -> web.BaseRequest:
        return self.served.request_factory(*parts).clone(remote=self.remote)
