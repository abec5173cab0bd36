"""A message's properties and payload as RabbitMQ 3.10's management plugin renders them in the
JSON of POST /api/queues/{vhost}/{name}/get (rabbit_mgmt_format), read from the raw property
bytes with Warren's own decoders, so that any property a publisher could send renders (headers
at any depth: tables and arrays are rebuilt without recursion, see `fieldtable.rebuild_nested`):

- short strings decoded as UTF-8, bytes that are not replaced by U+FFFD (so are header keys);
  long strings and byte arrays that are not UTF-8 as "Not UTF-8, base64 is: ...";
- the timestamp property and timestamp fields as the integer sent (no conversion);
- a decimal as the number "<scale>.<value as unsigned 32-bit>" (what RabbitMQ shows: 1.15 for
  scale 1 and value 15, 2.4294954951 for scale 2 and value -12345);
- void as "undefined"; present empty strings as "".
"""

from __future__ import annotations

import base64
import decimal
import math
from typing import Any

from protocol import properties
from protocol.fieldtable import TypedValue, rebuild_nested, typed_children

_NOT_UTF8 = "Not UTF-8, base64 is: "


def properties_json(raw: bytes) -> dict[str, Any] | list:
    """Every present property, by its API name; [] when there is none (as RabbitMQ shows)."""
    shown: dict[str, Any] = {}
    for name, value in properties.decode_all(raw).items():
        if name == "headers":
            shown[name] = _table(value)
        elif isinstance(value, bytes):  # a short string
            shown[name] = value.decode("utf-8", "replace")
        else:  # an octet, or the timestamp as sent
            shown[name] = value
    return shown or []


def payload_json(body: bytes, encoding: str) -> dict[str, Any]:
    """The payload as a string when asked for "auto" and it is UTF-8, else base64."""
    if encoding == "auto":
        try:
            return {"payload": body.decode(), "payload_encoding": "string"}
        except UnicodeDecodeError:
            pass
    return {"payload": base64.b64encode(body).decode(), "payload_encoding": "base64"}


def _table(table: dict[str, TypedValue]) -> dict[str, Any]:
    return rebuild_nested(("F", table), typed_children, _leaf_json, _keys_json)


def _keys_json(source: TypedValue, built: dict[str, Any] | list) -> dict[str, Any] | list:
    # Keys that are not UTF-8 come decoded with surrogateescape: shown as RabbitMQ does.
    if source[0] != "F":
        return built
    return {key.encode("utf-8", "surrogateescape").decode("utf-8", "replace"): value
            for key, value in built.items()}


def _leaf_json(value: TypedValue) -> Any:
    """One field value other than a table or array (type tag kept) as the management plugin
    renders it."""
    tag, content = value
    if tag in "Sx":
        try:
            return content.decode()
        except UnicodeDecodeError:
            return _NOT_UTF8 + base64.b64encode(content).decode()
    if tag == "D":
        return _decimal(content)
    if tag == "V":
        return "undefined"
    if tag in "fd" and not math.isfinite(content):
        return str(content)  # not JSON numbers (RabbitMQ refuses them at publish)
    return content


def _decimal(number: decimal.Decimal) -> float:
    sign, digits, exponent = number.as_tuple()
    value = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    scale = -exponent if exponent < 0 else 0
    if exponent > 0:
        value *= 10**exponent
    return float(f"{scale}.{value & 0xFFFFFFFF}")
