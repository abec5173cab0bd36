"""management/api/message_json.py without recursion: odd values (as RabbitMQ 3.10 renders them,
see tests/broker/RABBITMQ_ODD_PROPERTIES.md) at the bottom of headers nested 3000 deep render
under a recursion limit of 100. Over HTTP, tests/broker/test_odd_properties.py checks the
values and tests/broker/test_hostile_properties.py the depth, both against RabbitMQ too."""

from __future__ import annotations

import struct
import sys

from management.api.message_json import properties_json

DEPTH = 3000


def tbl(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_odd_values_3000_deep_render_without_recursion():
    bottom = (b"\x02\xff\xfeS" + tbl(b"v") + b"\x01DD\x02" + struct.pack(">i", -12345)
              + b"\x01LL" + struct.pack(">Q", 2**63) + b"\x01VV" + b"\x01xx" + tbl(b"\xff\x00")
              + b"\x03arrA" + tbl(b"T" + struct.pack(">Q", 5)))
    headers = tbl(bottom)
    for _ in range(DEPTH):
        headers = tbl(b"\x01tF" + headers)
    raw = (struct.pack(">H", 0x8000 | 0x2000 | 0x0040) + b"\x06text/\xff" + headers
           + struct.pack(">Q", 2**64 - 1))  # content_type, headers, timestamp

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        shown = properties_json(raw)
    finally:
        sys.setrecursionlimit(limit)

    assert shown["content_type"] == "text/\ufffd"
    assert shown["timestamp"] == 2**64 - 1
    table, depth = shown["headers"], 0
    while "t" in table:
        table, depth = table["t"], depth + 1
    assert depth == DEPTH
    assert table == {"\ufffd\ufffd": "v", "D": 2.4294954951, "L": -(2**63), "V": "undefined",
                     "x": "Not UTF-8, base64 is: /wA=", "arr": [5]}
