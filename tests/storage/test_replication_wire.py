"""The replication protocol's bytes (storage/replication/wire.py), with bytes only: every
message survives encode/decode, frames split anywhere are reassembled, and bytes that are not
the protocol are a ProtocolError, never a crash or a silent default."""

from __future__ import annotations

import struct

import pytest

from storage.replication import wire
from storage.replication.wire import (
    APPEND,
    DELETE,
    REPLACE,
    TRUNCATE,
    Action,
    FrameReader,
    ProtocolError,
)

NONCE = bytes(range(32))
MAC = bytes(range(32, 64))

MESSAGES = [
    wire.Hello(wire.FOLLOWER, 7, NONCE, "warren@b"),
    wire.Hello(wire.LEADER, 2**63, NONCE, "nœud", MAC),
    wire.Auth(MAC),
    wire.Refuse(wire.REFUSED_EPOCH, "epoch 3 is not the leader's epoch 4"),
    wire.FileList((wire.FileInfo("definitions.json", 12, (1,)),
                   wire.FileInfo("wal/000000000001.wal", 3 * 2**20 + 5, (1, 2, 3, 0xFFFFFFFF)),
                   wire.FileInfo("streams/2f.71/00000000000000000000.seg", 0, ()))),
    wire.Actions(9, 1234, (
        Action(APPEND, "wal/000000000001.wal", 16, [b"abc", b"def"]),
        Action(TRUNCATE, "wal/000000000001.wal", 19),
        Action(REPLACE, "definitions.json", 0, [b"{}"]),
        Action(DELETE, "streams/2f.71"),
    )),
    wire.CaughtUp(9, 0),
    wire.Ack(2**64 - 1),
    wire.Ping(9, 77),
    wire.Hello(wire.CLIENT_LINK, 5, NONCE, "warren@c"),
    wire.Client(("192.0.2.7", 50123), ("::1", 5672), '{"version": "TLSv1.3"}'),
    wire.Client(("127.0.0.1", 1), ("127.0.0.1", 65535), "", wire.HTTP_SERVICE),
    wire.Ready(),
]


def _same(decoded: wire.Message, original: wire.Message) -> bool:
    if isinstance(original, wire.Actions):  # parts are joined on the wire
        return (decoded.epoch, decoded.position) == (original.epoch, original.position) and [
            (a.kind, a.path, a.offset, a.data if a.parts else b"") for a in decoded.actions
        ] == [(a.kind, a.path, a.offset, a.data if a.parts else b"") for a in original.actions]
    return decoded == original


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_encode_and_decode(message):
    frame = wire.encode(message)
    length, kind = wire.FRAME_HEAD.unpack_from(frame)
    assert length == len(frame) - 4
    assert _same(wire.decode(kind, frame[5:]), message)


def test_frames_fed_a_byte_at_a_time_come_out_whole_and_in_order():
    stream = b"".join(wire.encode(message) for message in MESSAGES)
    reader = FrameReader(wire.MAX_FRAME)
    out = []
    for index in range(len(stream)):
        out += reader.feed(stream[index:index + 1])
    assert len(out) == len(MESSAGES)
    assert all(_same(got, sent) for got, sent in zip(out, MESSAGES, strict=True))


def test_a_live_batch_frame_carries_its_own_end_as_position():
    actions = [Action(APPEND, "wal/000000000001.wal", 16, [b"x" * 100])]
    frame, position = wire.encode_batch(3, 1000, actions)
    assert position == 1000 + len(frame)
    assert wire.frame_position(frame) == position
    decoded = FrameReader(wire.MAX_FRAME).feed(frame)[0]
    assert decoded.position == position and decoded.actions[0].data == b"x" * 100


def test_a_frame_over_the_handshake_limit_is_refused_before_it_is_read():
    head = wire.FRAME_HEAD.pack(wire.MAX_HANDSHAKE_FRAME + 1, wire.FILE_LIST)
    with pytest.raises(ProtocolError, match="over the limit"):
        FrameReader().feed(head)


@pytest.mark.parametrize("payload,kind,error", [
    (b"", wire.AUTH, "ends inside"),
    (MAC + b"x", wire.AUTH, "bytes left"),
    (b"\x00", 99, "unknown frame type"),
    (struct.pack("!QQI", 1, 2, 1) + b"\x09" + struct.pack("!H", 1) + b"a", wire.ACTIONS,
     "unknown action kind"),
    (struct.pack("!QQI", 1, 2, 1) + b"\x01" + struct.pack("!H", 1) + b"a"
     + struct.pack("!QI", 0, 10) + b"short", wire.ACTIONS, "ends inside"),
    (struct.pack("!B", 1) + struct.pack("!H", 2) + b"\xff\xfe", wire.REFUSE, "UTF-8"),
    (struct.pack("!H", 1) + b"a" + struct.pack("!H", 1), wire.CLIENT, "ends inside"),
    (b"\x00", wire.READY, "bytes left"),
])
def test_malformed_payloads_are_protocol_errors(payload, kind, error):
    with pytest.raises(ProtocolError, match=error):
        wire.decode(kind, payload)


def test_an_empty_frame_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="empty"):
        FrameReader().feed(struct.pack("!I", 0) + b"\x01")


def test_the_macs_depend_on_secret_role_nonces_and_epoch():
    other = bytes(32)
    base = wire.leader_mac("s3cret", NONCE, other, 5)
    assert base == wire.leader_mac("s3cret", NONCE, other, 5)
    assert base != wire.leader_mac("wrong", NONCE, other, 5)
    assert base != wire.leader_mac("s3cret", other, NONCE, 5)
    assert base != wire.leader_mac("s3cret", NONCE, other, 6)
    assert base != wire.follower_mac("s3cret", NONCE, other, 5)
    assert wire.mac_matches(base, base) and not wire.mac_matches(base, bytes(32))
