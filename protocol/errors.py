"""AMQP errors: a reply code and text that close a channel or the whole connection."""

from __future__ import annotations

from protocol.constants import FRAME_ERROR, REPLY_NAMES


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


def erlang_binary(data: bytes) -> str:
    """Bytes as Erlang prints a binary in RabbitMQ's frame error texts: <<"abc">> when every
    byte is printable ASCII, otherwise <<0,20,0,10>>."""
    if data and all(32 <= byte < 127 for byte in data):
        return '<<"' + data.decode().replace("\\", "\\\\").replace('"', '\\"') + '">>'
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def frame_error(frame_type: int, payload: bytes, reason: str) -> AMQPConnectionError:
    """501 for a frame that cannot be taken apart, worded like RabbitMQ's."""
    return AMQPConnectionError(
        FRAME_ERROR, f"type {frame_type}, all octets = {erlang_binary(payload)}: {reason}"
    )
