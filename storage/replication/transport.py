"""Reading and writing replication frames on asyncio streams (the one place both ends do
socket I/O with storage/replication/wire.py's bytes)."""

from __future__ import annotations

import asyncio

from storage.replication import wire


async def read_message(reader: asyncio.StreamReader, max_frame: int) -> wire.Message:
    """The next message; EOF is asyncio.IncompleteReadError, bad bytes wire.ProtocolError."""
    head = await reader.readexactly(wire.FRAME_HEAD.size)
    length, kind = wire.FRAME_HEAD.unpack(head)
    wire.check_length(length, max_frame)
    payload = await reader.readexactly(length - 1)
    return wire.decode(kind, payload)


def send(writer: asyncio.StreamWriter, message: wire.Message) -> None:
    writer.write(wire.encode(message))


async def refuse(writer: asyncio.StreamWriter, reason: int, text: str) -> None:
    """Tell the peer why, then close."""
    try:
        send(writer, wire.Refuse(reason, text))
        async with asyncio.timeout(1.0):
            await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()
