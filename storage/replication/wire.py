"""The replication protocol's bytes, sans-I/O: frames, the messages they carry, the HMAC of the
handshake. No sockets and no asyncio here; leader.py and follower.py do the I/O.

    frame := length u32 | type u8 | payload          (length covers type + payload)

All integers are big-endian; `text` is a length u16 and UTF-8 bytes.

    type  message    payload (direction)
    1     HELLO      version u16, role u8 (0 follower, 1 leader, 2 client link), epoch u64,
                     nonce 32 bytes, node name text, mac 32 bytes (both, first)
    2     AUTH       mac 32 bytes (follower or client link, after the leader's HELLO)
    3     REFUSE     reason u8 (1 auth, 2 epoch, 3 protocol), text (either, then it closes)
    4     FILE_LIST  count u32, per file: path text, size u64, chunk count u32, crc32 u32 per
                     chunk (follower, after AUTH)
    5     ACTIONS    epoch u64, position u64, count u32, actions (leader)
    6     CAUGHT_UP  epoch u64, position u64 (leader, after the catch-up's ACTIONS)
    7     ACK        position u64 (follower)
    8     PING       epoch u64, position u64 (leader, every replication_timeout / 3)
    9     CLIENT     peer host text, peer port u16, local host text, local port u16, tls text,
                     service u8 (client link, after AUTH: the client it carries; tls is "" for
                     plain TCP, else JSON of the follower's TLS session, broker/tls.py;
                     service 0 AMQP, 1 the management API over HTTP/1.0)
    10    READY      nothing (leader, after CLIENT: from now on the socket carries the
                     client's AMQP, or one HTTP request and its response)

    action := kind u8 | path text | APPEND (1): offset u64, length u32, data
                                  | TRUNCATE (2): size u64 (creates the file if missing)
                                  | REPLACE (3): length u32, data (atomically)
                                  | DELETE (4): nothing (a directory with all it holds)

The handshake proves both sides know the cluster secret without sending it: each side's HELLO
carries a fresh nonce; the leader's mac is HMAC-SHA256(secret, "leader" | follower nonce |
leader nonce | epoch), the follower's AUTH is HMAC-SHA256(secret, "follower" | leader nonce |
follower nonce | epoch). A HELLO from a follower carries a zero mac.

A client link (role 2) is a follower passing one AMQP client connection to the leader
(broker/cluster/clientlink.py): same handshake, then CLIENT names where the client really
connected from and to, the leader answers READY and hands the socket to its AMQP server; after
READY both ends speak AMQP (or HTTP) on it, the follower piping the client's bytes untouched.
Only a node holding the secret can so speak for a client's address.

Positions: the leader numbers its live stream by bytes: an ACTIONS frame's position is the
stream's length after it. Catch-up ACTIONS carry position 0 (nothing to acknowledge); the
CAUGHT_UP after them carries the position live actions start after. A follower acknowledges a
position once everything up to it is fsynced.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32
# Before the peer is authenticated a frame is small; after, a batch may be large.
MAX_HANDSHAKE_FRAME = 64 * 1024
MAX_FRAME = 0xFFFFFFFF

FRAME_HEAD = struct.Struct("!IB")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_TWO_U64 = struct.Struct("!QQ")
_HELLO_HEAD = struct.Struct("!HBQ")
_APPEND_HEAD = struct.Struct("!QI")

HELLO, AUTH, REFUSE, FILE_LIST, ACTIONS, CAUGHT_UP, ACK, PING, CLIENT, READY = range(1, 11)
FOLLOWER, LEADER, CLIENT_LINK = 0, 1, 2
AMQP_SERVICE, HTTP_SERVICE = 0, 1
REFUSED_AUTH, REFUSED_EPOCH, REFUSED_PROTOCOL = 1, 2, 3
APPEND, TRUNCATE, REPLACE, DELETE = 1, 2, 3, 4

ZERO_MAC = bytes(MAC_SIZE)


class ProtocolError(Exception):
    """Bytes that are not this protocol: the connection is closed."""


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    role: int
    epoch: int
    nonce: bytes
    node: str
    mac: bytes = ZERO_MAC
    version: int = VERSION


@dataclass(frozen=True)
class Auth:
    mac: bytes


@dataclass(frozen=True)
class Refuse:
    reason: int
    text: str


@dataclass(frozen=True)
class FileInfo:
    """A replicated file as one side has it: its size and the CRC32 of each CHUNK_SIZE chunk
    (the last one may be shorter)."""

    path: str
    size: int
    crcs: tuple[int, ...] = ()


@dataclass(frozen=True)
class FileList:
    files: tuple[FileInfo, ...]


@dataclass
class Action:
    """One change to a file of the data dir, `path` relative to it. APPEND keeps its data as
    parts (neighbouring appends to one file are merged without copying)."""

    kind: int
    path: str
    offset: int = 0  # APPEND: where; TRUNCATE: the new size
    parts: list[bytes] = field(default_factory=list)  # APPEND, REPLACE

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def data(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


@dataclass(frozen=True)
class Actions:
    epoch: int
    position: int
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class CaughtUp:
    epoch: int
    position: int


@dataclass(frozen=True)
class Ack:
    position: int


@dataclass(frozen=True)
class Ping:
    epoch: int
    position: int


@dataclass(frozen=True)
class Client:
    """The client a client link carries: its address (peer), the address it connected to on
    the follower (local), its TLS session there as JSON ("" for plain TCP), and whether it
    speaks AMQP or HTTP."""

    peer: tuple[str, int]
    local: tuple[str, int]
    tls: str = ""
    service: int = AMQP_SERVICE


@dataclass(frozen=True)
class Ready:
    pass


Message = Hello | Auth | Refuse | FileList | Actions | CaughtUp | Ack | Ping | Client | Ready


# -- the handshake's mac ------------------------------------------------------------------


def leader_mac(secret: str, follower_nonce: bytes, leader_nonce: bytes, epoch: int) -> bytes:
    return _mac(secret, b"leader", follower_nonce, leader_nonce, epoch)


def follower_mac(secret: str, leader_nonce: bytes, follower_nonce: bytes, epoch: int) -> bytes:
    return _mac(secret, b"follower", leader_nonce, follower_nonce, epoch)


def _mac(secret: str, role: bytes, first: bytes, second: bytes, epoch: int) -> bytes:
    return hmac.new(secret.encode(), role + first + second + _U64.pack(epoch),
                    hashlib.sha256).digest()


def mac_matches(expected: bytes, received: bytes) -> bool:
    return hmac.compare_digest(expected, received)


# -- encoding -----------------------------------------------------------------------------


def _frame(kind: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(len(payload) + 1, kind) + payload


def _text(value: str) -> bytes:
    data = value.encode()
    if len(data) > 0xFFFF:
        raise ValueError(f"text too long: {value[:40]!r}...")
    return _U16.pack(len(data)) + data


def encode(message: Message) -> bytes:
    """The frame of one message (ACTIONS: see encode_actions, which avoids a copy)."""
    if isinstance(message, Hello):
        if len(message.nonce) != NONCE_SIZE or len(message.mac) != MAC_SIZE:
            raise ValueError("nonce and mac are 32 bytes")
        return _frame(HELLO, _HELLO_HEAD.pack(message.version, message.role, message.epoch)
                      + message.nonce + _text(message.node) + message.mac)
    if isinstance(message, Auth):
        return _frame(AUTH, message.mac)
    if isinstance(message, Refuse):
        return _frame(REFUSE, bytes([message.reason]) + _text(message.text))
    if isinstance(message, FileList):
        parts = [_U32.pack(len(message.files))]
        for info in message.files:
            parts += (_text(info.path), _U64.pack(info.size), _U32.pack(len(info.crcs)),
                      struct.pack(f"!{len(info.crcs)}I", *info.crcs))
        return _frame(FILE_LIST, b"".join(parts))
    if isinstance(message, Actions):
        return encode_actions(message.epoch, message.position, message.actions)
    if isinstance(message, CaughtUp):
        return _frame(CAUGHT_UP, _TWO_U64.pack(message.epoch, message.position))
    if isinstance(message, Ack):
        return _frame(ACK, _U64.pack(message.position))
    if isinstance(message, Ping):
        return _frame(PING, _TWO_U64.pack(message.epoch, message.position))
    if isinstance(message, Client):
        return _frame(CLIENT, _text(message.peer[0]) + _U16.pack(message.peer[1])
                      + _text(message.local[0]) + _U16.pack(message.local[1])
                      + _text(message.tls) + bytes([message.service]))
    if isinstance(message, Ready):
        return _frame(READY, b"")
    raise TypeError(f"not a replication message: {message!r}")


def encode_actions(epoch: int, position: int,
                   actions: list[Action] | tuple[Action, ...]) -> bytes:
    """An ACTIONS frame, its data parts joined once."""
    return _encode_actions(epoch, actions, lambda _: position)[0]


def encode_batch(epoch: int, base: int, actions: list[Action]) -> tuple[bytes, int]:
    """A live ACTIONS frame of the stream at `base`: (frame, its position = base + its
    length)."""
    return _encode_actions(epoch, actions, lambda size: base + size)


def _encode_actions(epoch: int, actions: list[Action] | tuple[Action, ...],
                    position_of: Callable[[int], int]) -> tuple[bytes, int]:
    parts: list[bytes] = [b"", b"", _U32.pack(len(actions))]
    for action in actions:
        parts.append(bytes([action.kind]))
        parts.append(_text(action.path))
        if action.kind == APPEND:
            parts.append(_APPEND_HEAD.pack(action.offset, action.size))
            parts += action.parts
        elif action.kind == TRUNCATE:
            parts.append(_U64.pack(action.offset))
        elif action.kind == REPLACE:
            parts.append(_U32.pack(action.size))
            parts += action.parts
        elif action.kind != DELETE:
            raise ValueError(f"unknown action kind {action.kind}")
    length = sum(len(part) for part in parts) + 1 + _TWO_U64.size
    if length > MAX_FRAME:
        raise ValueError("ACTIONS frame larger than 4 GiB")
    position = position_of(length + 4)
    parts[0] = FRAME_HEAD.pack(length, ACTIONS)
    parts[1] = _TWO_U64.pack(epoch, position)
    return b"".join(parts), position


def frame_position(frame: bytes) -> int:
    """The position an encoded ACTIONS frame carries."""
    return _TWO_U64.unpack_from(frame, FRAME_HEAD.size)[1]


# -- decoding -----------------------------------------------------------------------------


class _Reader:
    """Reads fields off a payload; a field past its end is a ProtocolError."""

    __slots__ = ("data", "at")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.at = 0

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.data):
            raise ProtocolError("payload ends inside a field")
        view = self.data[self.at:end]
        self.at = end
        return view

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))

    def text(self) -> str:
        (size,) = self.unpack(_U16)
        try:
            return str(self.take(size), "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("text is not UTF-8") from exc

    def end(self) -> None:
        if self.at != len(self.data):
            raise ProtocolError("bytes left after the last field")


def decode(kind: int, payload: bytes | memoryview) -> Message:
    """The message of a frame's type and payload; ProtocolError if it is not one."""
    reader = _Reader(payload)
    message: Message
    if kind == HELLO:
        version, role, epoch = reader.unpack(_HELLO_HEAD)
        nonce = bytes(reader.take(NONCE_SIZE))
        node = reader.text()
        message = Hello(role, epoch, nonce, node, bytes(reader.take(MAC_SIZE)), version)
    elif kind == AUTH:
        message = Auth(bytes(reader.take(MAC_SIZE)))
    elif kind == REFUSE:
        reason = reader.take(1)[0]
        message = Refuse(reason, reader.text())
    elif kind == FILE_LIST:
        (count,) = reader.unpack(_U32)
        files = []
        for _ in range(count):
            path = reader.text()
            (size,) = reader.unpack(_U64)
            (chunks,) = reader.unpack(_U32)
            crcs = struct.unpack(f"!{chunks}I", reader.take(4 * chunks))
            files.append(FileInfo(path, size, crcs))
        message = FileList(tuple(files))
    elif kind == ACTIONS:
        epoch, position = reader.unpack(_TWO_U64)
        (count,) = reader.unpack(_U32)
        actions = []
        for _ in range(count):
            action_kind = reader.take(1)[0]
            path = reader.text()
            if action_kind == APPEND:
                offset, size = reader.unpack(_APPEND_HEAD)
                actions.append(Action(APPEND, path, offset, [bytes(reader.take(size))]))
            elif action_kind == TRUNCATE:
                actions.append(Action(TRUNCATE, path, reader.unpack(_U64)[0]))
            elif action_kind == REPLACE:
                (size,) = reader.unpack(_U32)
                actions.append(Action(REPLACE, path, 0, [bytes(reader.take(size))]))
            elif action_kind == DELETE:
                actions.append(Action(DELETE, path))
            else:
                raise ProtocolError(f"unknown action kind {action_kind}")
        message = Actions(epoch, position, tuple(actions))
    elif kind == CAUGHT_UP:
        message = CaughtUp(*reader.unpack(_TWO_U64))
    elif kind == ACK:
        message = Ack(reader.unpack(_U64)[0])
    elif kind == PING:
        message = Ping(*reader.unpack(_TWO_U64))
    elif kind == CLIENT:
        peer = (reader.text(), reader.unpack(_U16)[0])
        local = (reader.text(), reader.unpack(_U16)[0])
        message = Client(peer, local, reader.text(), reader.take(1)[0])
    elif kind == READY:
        message = Ready()
    else:
        raise ProtocolError(f"unknown frame type {kind}")
    reader.end()
    return message


class FrameReader:
    """Bytes in, messages out: `feed(data)` returns the messages completed so far. A frame
    longer than `max_frame` (or empty) is a ProtocolError; raise the cap once the peer is
    authenticated."""

    def __init__(self, max_frame: int = MAX_HANDSHAKE_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        at = 0
        while len(buffer) - at >= FRAME_HEAD.size:
            length, kind = FRAME_HEAD.unpack_from(buffer, at)
            check_length(length, self.max_frame)
            end = at + 4 + length
            if end > len(buffer):
                break
            messages.append(decode(kind, bytes(buffer[at + FRAME_HEAD.size:end])))
            at = end
        del buffer[:at]
        return messages


def check_length(length: int, max_frame: int) -> None:
    if length < 1:
        raise ProtocolError("empty frame")
    if length > max_frame:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {max_frame}")
