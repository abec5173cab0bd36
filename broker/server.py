"""Start-up and shutdown: build and start the node (definitions, message recovery), start the
management server, listen, and on SIGTERM/SIGINT stop accepting, stop the management server,
close client connections with 320 CONNECTION_FORCED, wait for them a little, stop the node."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable

from broker.config import Config
from broker.listeners import bind_all
from broker.node import Node
from broker.tls import amqps_context, management_context
from broker.transport import Transport
from management import local_admin
from management.app import ManagementServer
from protocol.session import HANDSHAKE_TIMEOUT

log = logging.getLogger(__name__)



async def serve(config: Config) -> None:
    if config.clustered:  # imported only here: a single node pays nothing for the cluster
        from broker.cluster.roles import serve_cluster

        await serve_cluster(config)
        return
    amqps_tls, management_tls = amqps_context(config), management_context(config)
    node = Node(config)
    await node.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before any port opens: a stop is clean
        loop.add_signal_handler(signum, stop.set)
    management = ManagementServer(node, local_admin.write_secret(config.data_dir))
    await management.start(config.management_host, config.management_port, management_tls)

    def amqp(host: str) -> Awaitable[asyncio.Server]:
        return loop.create_server(lambda: Transport(node), host, config.port,
                                  reuse_address=True, backlog=1024)

    def amqps(host: str) -> Awaitable[asyncio.Server]:
        return loop.create_server(
            lambda: Transport(node), host, config.amqps_port, ssl=amqps_tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT, reuse_address=True, backlog=1024,
        )

    listeners = await bind_all(config.host, config.port, amqp, "TCP")
    if amqps_tls is not None:
        listeners += await bind_all(config.amqps_host, config.amqps_port, amqps, "TLS (SSL)")
    await stop.wait()
    log.info("shutting down")
    for listener in listeners:
        listener.close()
    await management.stop()
    await node.close_clients()
    await node.stop()
    log.info("stopped")
