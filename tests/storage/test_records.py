"""Log records, bytes only: encode/decode round trips, the framing (length + CRC32 over the
type byte and body), the segment header, and how damaged bytes are reported.

No broker, no files: storage/records.py is pure. The layout checked here is the one its
docstring gives: record = length u32 | crc32 u32 | type u8 | body, all big-endian; segment
header = magic "WARRENLG" | version u16 | reserved u16 | segment number u32.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from storage import records
from storage.records import (
    DELIVERED,
    PUBLISH,
    PURGE,
    REMOVE,
    CorruptRecord,
    IdsRecord,
    PublishRecord,
    PurgeRecord,
)

QUEUES = [("/", "orders"), ("other", "orders"), ("/", "ünïcødé-queue ✓")]


def publish_bytes(body: bytes = b"hello", queues=None, props: bytes = b"\x10\x00\x02",
                  message_id: int = 42) -> bytes:
    data, body_at = records.encode_publish(
        message_id, 1_700_000_000_123, QUEUES if queues is None else queues,
        "amq.direct", "some.key", props, body,
    )
    assert data[body_at:] == body  # the body is last, where encode_publish says
    return data


def decode(data: bytes, offset: int = 0):
    read = records.read_record(data, offset)
    assert read is not None
    payload, end = read
    return records.decode_payload(payload), end


# -- framing ----------------------------------------------------------------------------------


def test_frame_layout_is_length_crc_type_body():
    data = records.frame(REMOVE, b"body bytes")
    length, crc = struct.unpack_from("!II", data)
    payload = data[8:]
    assert length == len(payload) == 1 + len(b"body bytes")
    assert payload[0] == REMOVE
    assert crc == zlib.crc32(payload)
    assert records.RECORD_HEAD_SIZE == 8


def test_read_record_returns_payload_and_next_offset():
    first = records.encode_purge(("/", "a"))
    second = records.encode_ids(REMOVE, ("/", "a"), [1, 2, 3])
    data = b"junk" + first + second
    payload, end = records.read_record(data, 4)
    assert payload == first[8:]
    assert end == 4 + len(first)
    payload, end = records.read_record(data, end)
    assert payload == second[8:]
    assert end == len(data)


# -- round trips ------------------------------------------------------------------------------


def test_publish_round_trip():
    body = bytes(range(256)) * 3
    props = b"\x90\x00\x0atext/plain\x02"
    record, end = decode(publish_bytes(body, props=props))
    assert isinstance(record, PublishRecord)
    assert record.message_id == 42
    assert record.published_at == 1_700_000_000_123
    assert record.queues == QUEUES
    assert record.exchange == "amq.direct"
    assert record.routing_key == "some.key"
    assert record.props_raw == props
    assert record.body == body
    assert record.body_size == len(body)
    assert end == len(publish_bytes(body, props=props))


def test_publish_body_offset_points_at_the_body_inside_the_payload():
    body = b"the body at the end"
    data = publish_bytes(body)
    payload = data[records.RECORD_HEAD_SIZE:]
    record = records.decode_payload(payload)
    assert payload[record.body_offset:] == body
    assert payload[record.body_offset:record.body_offset + len(body)] == record.body


def test_publish_head_plus_body_is_the_same_record():
    body = b"x" * 1000
    head = records.publish_head(7, 123, QUEUES, "ex", "rk", b"\x00\x00", len(body))
    data, body_at = records.encode_publish(7, 123, QUEUES, "ex", "rk", b"\x00\x00", body)
    assert records.frame(PUBLISH, head + body) == data
    assert records.publish_prefix(head) == data[records.RECORD_HEAD_SIZE:body_at]


def test_publish_decoded_without_its_body_says_where_it_is():
    body = b"read me back later"
    data = publish_bytes(body)
    payload = data[records.RECORD_HEAD_SIZE:]
    record = records.decode_payload(payload, with_body=False)
    assert record.body is None
    assert record.body_size == len(body)
    assert payload[record.body_offset:record.body_offset + record.body_size] == body


@pytest.mark.parametrize("body", [b"", b"\x00", b"x" * 70_000])
def test_publish_bodies_of_any_size(body):
    record, _ = decode(publish_bytes(body, props=b""))
    assert record.body == body
    assert record.props_raw == b""


def test_publish_to_no_queue_and_empty_names():
    data, _ = records.encode_publish(1, 0, [], "", "", b"", b"b")
    record, _ = decode(data)
    assert record.queues == []
    assert record.exchange == ""
    assert record.routing_key == ""


def test_publish_with_255_byte_names():
    name = "q" * 255
    data, _ = records.encode_publish(2**64 - 1, 2**64 - 1, [("v" * 255, name)], "e" * 255,
                                     "k" * 255, b"", b"b")
    record, _ = decode(data)
    assert record.message_id == 2**64 - 1
    assert record.queues == [("v" * 255, name)]
    assert record.exchange == "e" * 255
    assert record.routing_key == "k" * 255


@pytest.mark.parametrize("record_type", [REMOVE, DELIVERED])
def test_ids_round_trip(record_type):
    ids = [1, 2, 3, 2**40, 2**64 - 1]
    record, _ = decode(records.encode_ids(record_type, ("other", "q.1"), ids))
    assert record == IdsRecord(record_type, ("other", "q.1"), ids)


def test_ids_record_with_no_ids():
    record, _ = decode(records.encode_ids(REMOVE, ("/", "q"), []))
    assert record == IdsRecord(REMOVE, ("/", "q"), [])


def test_ids_record_with_many_ids():
    ids = list(range(1, 100_001))
    record, _ = decode(records.encode_ids(DELIVERED, ("/", "q"), ids))
    assert record.message_ids == ids


def test_purge_round_trip():
    record, _ = decode(records.encode_purge(("/", "ünïcødé-queue ✓")))
    assert record == PurgeRecord(("/", "ünïcødé-queue ✓"))


def test_state_round_trip():
    """Entries of (message id u64, returns u32, dead-letter reason code u8, place u64)."""
    states = [(1, 3, 0, 0), (2**64 - 1, 2**32 - 1, 4, 2**63), (7, 0, 1, 9)]
    encoded = records.encode_states(("/", "qq"), states)
    record, _ = decode(encoded)
    assert record == records.StateRecord(("/", "qq"), states)
    assert len(encoded) == 8 + 1 + 2 + 3 + 4 + 21 * len(states)


def test_state_record_whose_entries_do_not_fill_it_is_corrupt():
    payload = records.encode_states(("/", "qq"), [(1, 1, 0, 0)])[8:]
    with pytest.raises(records.CorruptRecord):
        records.decode_payload(payload[:-1])


def test_record_type_numbers_are_stable():
    """They are on disk: renumbering them would misread every existing log."""
    assert (PUBLISH, REMOVE, DELIVERED, PURGE, records.STATE) == (1, 2, 3, 4, 5)


# -- segment header ---------------------------------------------------------------------------


def test_segment_header_round_trip():
    header = records.segment_header(123456)
    assert len(header) == records.SEGMENT_HEADER_SIZE == 16
    assert header.startswith(b"WARRENLG")
    assert records.parse_segment_header(header) == (records.FORMAT_VERSION, 123456)
    assert records.parse_segment_header(header + b"records follow") == (
        records.FORMAT_VERSION, 123456
    )


def test_segment_header_of_another_version_is_parsed_not_refused():
    """The version is reported; refusing it is the data dir check's job."""
    header = struct.pack("!8sHHI", b"WARRENLG", 99, 0, 5)
    assert records.parse_segment_header(header) == (99, 5)


@pytest.mark.parametrize("data", [b"", b"WARRENLG", b"NOTWARRN" + bytes(8), bytes(16)])
def test_bad_segment_headers(data):
    with pytest.raises(CorruptRecord):
        records.parse_segment_header(data)


# -- damage -----------------------------------------------------------------------------------


def test_truncated_record_is_not_corrupt_but_incomplete():
    """A record cut anywhere (a torn write) reads as None: 'the data ends inside it'."""
    data = publish_bytes(b"y" * 100)
    for cut in range(len(data)):
        assert records.read_record(data[:cut], 0) is None, cut


def test_any_flipped_byte_is_detected():
    data = publish_bytes(b"z" * 40)
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        try:
            read = records.read_record(bytes(damaged), 0)
        except CorruptRecord:
            continue
        # A flipped bit in the length can make the record look longer than the data.
        assert read is None and index < 4, index


@pytest.mark.parametrize("length", [0, records.MAX_RECORD_SIZE + 1, 0xFFFFFFFF])
def test_absurd_lengths_are_corrupt(length):
    data = struct.pack("!II", length, 0) + bytes(64)
    with pytest.raises(CorruptRecord, match="length"):
        records.read_record(data, 0)


def test_zero_filled_tail_is_corrupt():
    """Pre-allocated zeros after a crash: length 0 is not a record."""
    with pytest.raises(CorruptRecord):
        records.read_record(bytes(64), 0)


def test_unknown_record_type():
    with pytest.raises(CorruptRecord, match="unknown record type"):
        records.decode_payload(b"\x63abc")


def test_empty_payload():
    with pytest.raises(CorruptRecord):
        records.decode_payload(b"")


@pytest.mark.parametrize(
    "payload",
    [
        bytes([PUBLISH]) + b"\x00" * 5,  # head cut short
        bytes([REMOVE, 1]) + b"/",  # queue key cut short
        bytes([REMOVE, 1]) + b"/" + bytes([1]) + b"q" + struct.pack("!I", 3) + bytes(8),
        bytes([PURGE, 5]) + b"ab",
        bytes([PURGE, 2]) + b"\xff\xfe" + bytes([1]) + b"q",  # not UTF-8
    ],
)
def test_payloads_that_lie_about_their_sizes(payload):
    """A CRC-valid payload whose inner lengths do not add up is corrupt, not a crash."""
    with pytest.raises(CorruptRecord):
        records.decode_payload(payload)


def test_publish_whose_body_size_overruns_the_record():
    payload = bytearray(publish_bytes(b"abcdef")[records.RECORD_HEAD_SIZE:])
    body_size_at = len(payload) - 6 - 4
    for wrong in (1000, 5, 7):
        struct.pack_into("!I", payload, body_size_at, wrong)
        with pytest.raises(CorruptRecord):
            records.decode_payload(bytes(payload))
