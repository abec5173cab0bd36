"""AMQP errors: a reply code and text that close a channel or the whole connection."""

from __future__ import annotations

from protocol.constants import FRAME_ERROR, REPLY_NAMES, UNEXPECTED_FRAME


def fit_shortstr(text: str) -> str:
    """`text`, cut as RabbitMQ cuts it to fit a shortstr (252 bytes and '...')."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a name taken from bytes that are not UTF-8 (surrogateescape)
        data = text.encode("utf-8", "surrogateescape")
        return text if len(data) <= 255 else (data[:252] + b"...").decode(
            "utf-8", "surrogateescape")
    if len(data) <= 255:
        return text
    return (data[:252] + b"...").decode(errors="ignore")


class AMQPError(Exception):
    """An error the peer is told about with channel.close or connection.close."""

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id
        super().__init__(self.reply_text)

    @property
    def reply_text(self) -> str:
        """The reply text as RabbitMQ formats it: the code's name, a dash, the detail; cut like
        RabbitMQ cuts it to fit a shortstr (252 bytes and '...')."""
        name = REPLY_NAMES.get(self.reply_code, str(self.reply_code))
        return fit_shortstr(f"{name} - {self.text}" if self.text else name)


class AMQPChannelError(AMQPError):
    """Closes the channel the offending method came on (soft error)."""


class AMQPConnectionError(AMQPError):
    """Closes the whole connection (hard error)."""


# RabbitMQ's names of its errors (not_found, precondition_failed ...) -> reply codes.
REPLY_CODES = {name.lower(): code for code, name in REPLY_NAMES.items()}


def named_error(kind: str, text: str, class_id: int = 0, method_id: int = 0) -> AMQPError:
    """The AMQP error RabbitMQ names `kind`: hard (5xx: command_invalid, not_allowed,
    not_implemented ...) closes the connection, the others the channel."""
    code = REPLY_CODES[kind]
    error_class = AMQPConnectionError if code >= 500 else AMQPChannelError
    return error_class(code, text, class_id, method_id)


class UndecodableMethod(AMQPConnectionError):
    """501 `cannot decode <<...>>`: method arguments that do not fill the frame exactly (a length
    running past it, or bytes after the last argument). RabbitMQ's generated decoder fails its
    binary match; during the handshake and on channel 0 that failure is not an AMQP error there
    (no frame in the handshake; 541 on channel 0 of an open connection, see RABBITMQ_TEXTS.md)."""


class MalformedUtf8(AMQPConnectionError):
    """501 `Malformed UTF-8 in shortstr`, RabbitMQ's check of a method's short strings."""

    def __init__(self, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(FRAME_ERROR, "Malformed UTF-8 in shortstr", class_id, method_id)


class UnknownMethod(AMQPConnectionError):
    """540 for a (class, method) that AMQP 0-9-1 does not define. RabbitMQ's reader crashes on
    it and drops the socket without a frame; Warren says why (a deliberate difference, except
    during the handshake, where RabbitMQ's silence is kept)."""


# The control characters Erlang prints escaped inside a string (so a binary of them and of
# printable ASCII is printed as <<"...">>), and its escapes.
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e",
            34: '\\"', 92: "\\\\"}
# Where Erlang's ~p breaks the terms of frame error texts (columns of the text after
# "FRAME_ERROR - ", measured on RabbitMQ 3.10.8): a binary stays on one line if it ends by
# column 81, else its numbers fill lines up to column 79; a tuple stays on one line if it ends
# by column 78.
BINARY_FLAT, BINARY_FILL, TUPLE_FLAT = 81, 79, 78


def erlang_binary(data: bytes) -> str:
    """Bytes as Erlang's ~p prints a binary, on one line: <<"abc">> when every byte is printable
    ASCII or one of the escaped control characters, otherwise <<0,20,0,10>>. (Erlang also
    prints bytes 160-255 as Latin-1 text, which RabbitMQ then sends as bytes that are not
    UTF-8: Warren prints those as numbers.)"""
    if data and all(32 <= byte < 127 or byte in _ESCAPES for byte in data):
        return '<<"' + "".join(_ESCAPES.get(byte) or chr(byte) for byte in data) + '">>'
    return erlang_bytes(data)


def erlang_bytes(data: bytes) -> str:
    """Bytes as Erlang's ~w prints a binary (RabbitMQ's `cannot decode ~w`): <<97,98,99>>."""
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def _pretty(items: list[str], column: int, opening: str, closing: str, flat_until: int,
            fill_until: int | None = None) -> str:
    """A binary's numbers (fill_until: as many as end by that column on each line) or a
    tuple's elements (the first on the opening line, then one per line) laid out from `column`
    as Erlang's ~p does: on one line if it ends by `flat_until`, else broken, with the lines
    indented under the first item."""
    flat = opening + ",".join(items) + closing
    if column + len(flat) <= flat_until or len(items) < 2:
        return flat
    indent = column + len(opening)
    text, at = opening, indent
    for number, item in enumerate(items):
        piece = item + ("," if number < len(items) - 1 else closing)
        if number and (fill_until is None or at + len(piece) > fill_until):
            text, at = text + "\n" + " " * indent, indent
        text, at = text + piece, at + len(piece)
    return text


def _last_column(text: str) -> int:
    return len(text) - text.rfind("\n") - 1


def octets(payload: bytes, column: int = 0) -> str:
    """A frame's payload as RabbitMQ quotes it in frame errors (`~ts octets = ~tp`, starting at
    `column`): all of it up to 16 bytes, otherwise its first 16; numbers that pass the line
    are carried over as Erlang's ~p does."""
    head = "all octets = " if len(payload) <= 16 else "first 16 octets = "
    quoted = erlang_binary(payload[:16])
    if quoted.startswith('<<"'):  # 16 characters at most: never past the line
        return head + quoted
    items = [str(byte) for byte in payload[:16]]
    return head + _pretty(items, column + len(head), "<<", ">>", BINARY_FLAT, BINARY_FILL)


def frame_error(frame_type: int, payload: bytes, reason: str | tuple[str | int, ...]
                ) -> AMQPConnectionError:
    """501 for a frame that cannot be taken apart, worded (and laid out) like RabbitMQ's
    `type ~tp, ~ts octets = ~tp: ~tp`: `reason` is an atom or a tuple of atoms and numbers."""
    text = f"type {frame_type}, "
    text += octets(payload, len(text)) + ": "
    if isinstance(reason, tuple):
        text += _pretty([str(item) for item in reason], _last_column(text), "{", "}", TUPLE_FLAT)
    else:
        text += reason
    return AMQPConnectionError(FRAME_ERROR, text)


def unexpected_frame(frame_type: int, payload: bytes) -> AMQPConnectionError:
    """505 for a frame RabbitMQ does not expect where it came, worded like its own."""
    text = f"type {frame_type}, "
    return AMQPConnectionError(UNEXPECTED_FRAME, text + octets(payload, len(text)))
