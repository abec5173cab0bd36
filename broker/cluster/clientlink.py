"""A client link: how a follower passes one AMQP client connection (or one management API
request) to the leader together with the client's own address, in a way no client can forge.

The follower connects to the leader's replication port and authenticates as the replication
does (HELLO / HELLO / AUTH with the cluster secret and the epoch, storage/replication/wire.py),
with the client-link role; it sends CLIENT (the client's address, the follower's address the
client connected to, the client's TLS session there) and waits for READY. The leader's
replication server then hands the socket to its AMQP server (`take_client`) as a connection
with that `Origin` (broker/transport.py): loopback-only users (guest) are judged as the
follower would judge them (by the address the client connected to there, as RabbitMQ does),
/api/connections shows the client's peer_host and peer_port and the follower as `node`, and
EXTERNAL reads the certificate the follower verified.
From READY on, both ends speak plain AMQP on the socket (the follower pipes the client's bytes
untouched, broker/cluster/passthrough.py). A management API request goes the same way
(service HTTP, broker/cluster/httpfront.py): the follower sends it as HTTP/1.0 over the link,
the leader's management server answers it as from the client's address (so its loopback rule
for guest is judged as on the node asked) and closes the link.

Both ends swap the stream's protocol for their own (`asyncio.Transport.set_protocol`) once the
handshake's last frame has been read: nothing else is buffered then, since neither side sends
AMQP before READY is through. The stream writer is kept alive with the new protocol: garbage
collected, it would close the socket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from broker.tls import ForwardedTLS, session_summary
from broker.transport import Origin, Transport
from storage.replication import ReplicationRefused, wire
from storage.replication.transport import introduce, read_message, send

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0


async def open_link(leader: tuple[str, int], client: wire.Client, *, secret: str, epoch: int,
                    node_name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Follower: a socket to the leader that, after READY, carries `client`'s bytes.
    OSError, TimeoutError, ReplicationRefused or wire.ProtocolError if it cannot be had."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        reader, writer = await asyncio.open_connection(*leader)
        try:
            await introduce(reader, writer, role=wire.CLIENT_LINK, secret=secret, epoch=epoch,
                            node_name=node_name, timeout=CONNECT_TIMEOUT)
            send(writer, client)
            ready = await read_message(reader, wire.MAX_HANDSHAKE_FRAME)
        except BaseException:
            writer.close()
            raise
    if isinstance(ready, wire.Refuse):
        writer.close()
        raise ReplicationRefused(f"the leader refused the client link: {ready.text}")
    if not isinstance(ready, wire.Ready):
        writer.close()
        raise wire.ProtocolError(f"expected READY, not {type(ready).__name__}")
    return reader, writer


def client_of(transport: asyncio.BaseTransport,
              service: int = wire.AMQP_SERVICE) -> wire.Client:
    """Follower: the CLIENT message of a client's socket (its TLS session if it has one)."""
    peer = transport.get_extra_info("peername") or ("", 0)
    local = transport.get_extra_info("sockname") or ("", 0)
    return wire.Client((peer[0], peer[1]), (local[0], local[1]),
                       session_summary(transport.get_extra_info("ssl_object")), service)


def take_client(node: Node, via: str, client: wire.Client, writer: asyncio.StreamWriter) -> None:
    """Leader: the socket of an authenticated client link is now `client`'s AMQP connection
    (or its management API request), come through node `via`."""
    if client.service == wire.AMQP_SERVICE:
        try:
            tls = ForwardedTLS(client.tls) if client.tls else None
        except (ValueError, TypeError, KeyError) as error:
            log.warning("client link from %s refused: its TLS session is not readable: %s",
                        via, error)
            writer.close()
            return
        adopt(writer, Transport(node, Origin(client.peer, client.local, via, tls, keep=writer)))
        return
    # node.cluster is the ClusterMember, whose management server runs once it leads
    management = getattr(node.cluster, "management", None)
    protocol = None
    if client.service == wire.HTTP_SERVICE and management is not None:
        protocol = management.passed_on(client.peer[0], keep=writer)
    if protocol is None:
        log.warning("client link from %s for service %d refused (no such service here yet)",
                    via, client.service)
        writer.close()
        return
    adopt(writer, protocol)


def adopt(writer: asyncio.StreamWriter, protocol: asyncio.Protocol) -> None:
    """`protocol` takes over the socket of `writer`'s stream (either end, after READY); it
    must keep `writer` referenced."""
    transport = writer.transport
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
