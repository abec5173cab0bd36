"""JSON text of API answers, at any depth.

`json.dumps` recurses (its C encoder stops at the interpreter's recursion limit), but message
headers may nest thousands of tables or arrays deep, as RabbitMQ accepts and renders them. The
usual encoder writes everything it can; values nested deeper than it goes are written by an
encoder with its own stack, in the same format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_END = object()
_plain = json.JSONEncoder()  # its floats (NaN, Infinity) as json.dumps writes them


def dumps(value: Any, default: Callable[[Any], Any]) -> str:
    try:
        return json.dumps(value, default=default)
    except RecursionError:
        return deep_dumps(value, default)


def deep_dumps(value: Any, default: Callable[[Any], Any]) -> str:
    """The text json.dumps(value, default=default) gives, without recursion."""
    out: list[str] = []
    # Each entry: an iterator over what is left of an object's items or an array's values,
    # whether it is an object, and whether an item of it was written already.
    stack: list[list[Any]] = []
    pending, has_value = value, True
    while True:
        if has_value:
            if isinstance(pending, dict):
                out.append("{")
                stack.append([iter(pending.items()), True, False])
            elif isinstance(pending, list | tuple):
                out.append("[")
                stack.append([iter(pending), False, False])
            elif isinstance(pending, str | int | float) or pending is None:
                out.append(_plain.encode(pending))
            else:
                pending = default(pending)
                continue
        if not stack:
            return "".join(out)
        top = stack[-1]
        item = next(top[0], _END)
        if item is _END:
            stack.pop()
            out.append("}" if top[1] else "]")
            has_value = False
            continue
        if top[2]:
            out.append(", ")
        top[2] = True
        if top[1]:
            key, pending = item
            out.append(_plain.encode(key if isinstance(key, str) else str(key)) + ": ")
        else:
            pending = item
        has_value = True
