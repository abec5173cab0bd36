"""Reading and writing replication frames on asyncio streams (the one place both ends do
socket I/O with storage/replication/wire.py's bytes)."""

from __future__ import annotations

import asyncio
import os

from storage.replication import wire
from storage.replication.status import ReplicationRefused


async def read_message(reader: asyncio.StreamReader, max_frame: int) -> wire.Message:
    """The next message; EOF is asyncio.IncompleteReadError, bad bytes wire.ProtocolError."""
    head = await reader.readexactly(wire.FRAME_HEAD.size)
    length, kind = wire.FRAME_HEAD.unpack(head)
    wire.check_length(length, max_frame)
    payload = await reader.readexactly(length - 1)
    return wire.decode(kind, payload)


def send(writer: asyncio.StreamWriter, message: wire.Message) -> None:
    writer.write(wire.encode(message))


async def refuse(writer: asyncio.StreamWriter, reason: int, text: str,
                 reader: asyncio.StreamReader | None = None) -> None:
    """Tell the peer why, then close. With its `reader`, what the peer sent meanwhile is read
    (for up to a second) before the close: closing on unread bytes would reset the connection,
    and a reset can throw away the refusal before the peer has read it."""
    try:
        send(writer, wire.Refuse(reason, text))
        async with asyncio.timeout(1.0):
            await writer.drain()
            if reader is not None:
                writer.write_eof()
                while await reader.read(65536):
                    pass
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def introduce(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, role: int,
                    secret: str, epoch: int, node_name: str, timeout: float) -> None:
    """The connecting side's handshake (a follower, or a client link): HELLO, check the
    leader's HELLO (its epoch, its mac), AUTH. ReplicationRefused if either side refuses."""
    nonce = os.urandom(wire.NONCE_SIZE)
    send(writer, wire.Hello(role, epoch, nonce, node_name))
    async with asyncio.timeout(timeout):
        hello = await read_message(reader, wire.MAX_HANDSHAKE_FRAME)
    if isinstance(hello, wire.Refuse):
        raise ReplicationRefused(f"the leader refused: {hello.text}")
    if not isinstance(hello, wire.Hello) or hello.role != wire.LEADER:
        raise wire.ProtocolError("expected the leader's HELLO")
    if hello.epoch != epoch:
        await refuse(writer, wire.REFUSED_EPOCH, f"follower of epoch {epoch}", reader)
        raise ReplicationRefused(f"leader at epoch {hello.epoch}, not {epoch}")
    expected = wire.leader_mac(secret, nonce, hello.nonce, epoch)
    if not wire.mac_matches(expected, hello.mac):
        await refuse(writer, wire.REFUSED_AUTH, "authentication failed", reader)
        raise ReplicationRefused("the leader does not know the cluster secret")
    send(writer, wire.Auth(wire.follower_mac(secret, hello.nonce, nonce, epoch)))
