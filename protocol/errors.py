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


def erlang_binary(data: bytes) -> str:
    """Bytes as Erlang prints a binary in RabbitMQ's frame error texts: <<"abc">> when every
    byte is printable ASCII, otherwise <<0,20,0,10>>."""
    if data and all(32 <= byte < 127 for byte in data):
        return '<<"' + data.decode().replace("\\", "\\\\").replace('"', '\\"') + '">>'
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def octets(payload: bytes) -> str:
    """A frame's payload as RabbitMQ quotes it in frame errors: all of it up to 16 bytes,
    otherwise its first 16."""
    if len(payload) <= 16:
        return f"all octets = {erlang_binary(payload)}"
    return f"first 16 octets = {erlang_binary(payload[:16])}"


def frame_error(frame_type: int, payload: bytes, reason: str) -> AMQPConnectionError:
    """501 for a frame that cannot be taken apart, worded like RabbitMQ's."""
    return AMQPConnectionError(FRAME_ERROR, f"type {frame_type}, {octets(payload)}: {reason}")


def unexpected_frame(frame_type: int, payload: bytes) -> AMQPConnectionError:
    """505 for a frame RabbitMQ does not expect where it came, worded like its own."""
    return AMQPConnectionError(UNEXPECTED_FRAME, f"type {frame_type}, {octets(payload)}")
