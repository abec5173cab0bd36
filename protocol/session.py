"""The connection side of an AMQP 0-9-1 session, sans-I/O (in the manner of h11): the handshake
(protocol header, start/start-ok, tune/tune-ok, open/open-ok), connection.close both ways, the
heartbeat monitor, and the table of channel numbers. No sockets, no asyncio, nothing of the
broker: bytes and frames go in, and out come `Action`s for the adapter (broker/connection.py)
to carry out in order — bytes to send, "authenticate", "open this vhost", "close the socket
after N seconds", "start heartbeats" ...

The adapter answers the actions that ask something of it before it hands the session its next
frame: `Authenticate` with `login_accepted()` or `login_refused()`, `OpenVhost` with
`vhost_opened()` (or a refusal of its own: an `AMQPConnectionError`, which it hands to
`fail`), `OpenChannel` and `AwaitChannelContent` with `channel_made()`, `ClientClosed` with
`close_confirmed()` once the client's publishes are confirmed.

The handshake's transitions are written as one table, `TRANSITIONS`: (state, event) -> (next
state, handler); an event is the method class of a frame on channel 0 or one of the adapter's
answers above. A handler returns the actions; the state becomes the next one only if it returns
(a handler that raises leaves the state as it was, which decides how the error is answered).

Errors are raised, as h11 raises them: `AMQPConnectionError` (closes the connection) and
`HandshakeRefused` (RabbitMQ says nothing: the socket is closed SILENT_CLOSE_DELAY seconds
later). The adapter catches them around everything it hands the session and passes the first
to `fail`, the second to `refuse`; `fail` decides the answer by state, as RabbitMQ 3.10.8 does (see
tests/broker/RABBITMQ_TEXTS.md): connection.close and a wait for close-ok, connection.close and
an immediate hang-up (framing errors), silence and a delayed close (refusals during the
handshake), or an immediate close (an unknown method during the handshake).

Frames on channels other than 0 do not pass through the session once the channel exists (hot
path): the adapter looks them up in `channels` (number -> the adapter's channel object, opaque
here) and hands them to the channel. A frame for a number not in the table comes to
`frame_on_new_channel`, which applies channel_max and decides between opening the channel
(`OpenChannel`), a channel that must first swallow a content (`AwaitChannelContent`) and the
connection errors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pamqp import commands as spec
from pamqp import decode as pamqp_decode

from protocol import codec
from protocol.constants import (
    ACCESS_REFUSED,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    CONNECTION_FORCED,
    FRAME_ERROR,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
)
from protocol.errors import (
    AMQPConnectionError,
    AMQPError,
    MalformedUtf8,
    UndecodableMethod,
    UnknownMethod,
    fit_shortstr,
    unexpected_frame,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# Timings, as RabbitMQ 3.10.8 keeps them.
HANDSHAKE_TIMEOUT = 10.0  # from the socket's accept to connection.open-ok
CLOSE_OK_TIMEOUT = 3.0  # we sent connection.close: how long we wait for close-ok
# After our close-ok to a client's connection.close, RabbitMQ leaves closing the socket to the
# client (closing first, with bytes of the client's unread, would make the kernel send a reset
# that can destroy the close-ok): we read and discard until it does, or for this long.
LINGER_TIMEOUT = 30.0
SILENT_CLOSE_DELAY = 3.0  # a refused handshake keeps its socket this long, without a word
MISSED_TICKS = 4  # heartbeat ticks (half an interval each) without input that end a connection

# CloseSocket reasons the adapter logs.
HANDSHAKE_TIMED_OUT = "handshake timeout"
MISSED_HEARTBEATS = "missed heartbeats"

# Content-carrying methods a server sends: on a channel never opened RabbitMQ's reader still
# assembles their content before the channel refuses them.
SERVER_CONTENT_METHODS = frozenset(
    (spec.Basic.Return.index, spec.Basic.Deliver.index, spec.Basic.GetOk.index)
)


class State(Enum):
    """Connection states, valued with the names RabbitMQ uses for them in reply texts."""

    AWAITING_HEADER = "handshake"
    AWAITING_START_OK = "starting"
    AWAITING_TUNE_OK = "tuning"
    AWAITING_OPEN = "opening"
    OPEN = "running"
    CLOSING = "closing"  # we sent connection.close, waiting for close-ok
    LINGERING = "closed by client"  # it sent connection.close: we answer close-ok, then wait
    CLOSED = "closed"


_HANDSHAKE = (State.AWAITING_START_OK, State.AWAITING_TUNE_OK, State.AWAITING_OPEN)


class HandshakeRefused(Exception):
    """The handshake cannot go on and RabbitMQ would say nothing: the socket is closed, after
    SILENT_CLOSE_DELAY seconds (`Session.fail` says which errors end a handshake so)."""


# --- actions: what the adapter is to do, in order --------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes (whole frames) to the socket."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check the client's credentials; answer with login_accepted() or login_refused().
    EXTERNAL has neither name nor password: the name comes from the TLS certificate."""

    mechanism: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Tuned:
    """The limits the client agreed to (connection.tune-ok)."""

    frame_max: int
    channel_max: int
    heartbeat: int


@dataclass(frozen=True, slots=True)
class OpenVhost:
    """The client asks for this vhost; answer with vhost_opened() or raise the refusal."""

    name: str


@dataclass(frozen=True, slots=True)
class StartHeartbeats:
    """The connection is open: stop the handshake timer and, if `every` is not 0, call
    heartbeat_tick every `every` seconds."""

    every: float


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the socket: now (after=0), or `after` seconds from now, which replaces any timer
    set before (a heartbeat, an earlier timeout). `reason`, if any, is worth a log line."""

    after: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Refuse:
    """A refused handshake: read nothing more (not even the rest of this read) and close the
    socket `after` seconds from now, without a word."""

    after: float


@dataclass(frozen=True, slots=True)
class CloseChannels:
    """We are closing the connection: release these channels, taken out of the table; keep
    reading (a blocked connection reads again), since the client's close-ok must reach us."""

    channels: list[Any]


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """The client sent connection.close: release everything the connection holds and call
    close_confirmed() once what it published is confirmed (after the disk, for persistent
    messages). `channels` are the channels it had, taken out of the table."""

    reply_code: int
    reply_text: str
    channels: list[Any]


@dataclass(frozen=True, slots=True)
class SecretUpdated:
    """connection.update-secret was answered (worth a log line)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OpenChannel:
    """channel.open on a free number: make the channel, hand it to channel_made()."""

    number: int


@dataclass(frozen=True, slots=True)
class AwaitChannelContent:
    """A content method (method index `index`) on a channel never opened: RabbitMQ's reader
    assembles the content before the channel sees the method and wants channel.open; make a
    channel that does so and hand it to channel_made()."""

    number: int
    index: int


Action = (Send | Authenticate | Tuned | OpenVhost | StartHeartbeats | CloseSocket | Refuse
          | CloseChannels | ClientClosed | SecretUpdated | OpenChannel | AwaitChannelContent)


# --- the adapter's answers, events of the transition table -----------------------------------


class LoginAccepted:
    """The adapter's answer to Authenticate: the credentials are good."""


class LoginRefused:
    """The adapter's answer to Authenticate: they are not."""


class VhostOpened:
    """The adapter's answer to OpenVhost: the client may use the vhost."""


class CloseConfirmed:
    """The adapter's answer to ClientClosed: close-ok may go."""


C = TypeVar("C")  # the adapter's channel object, opaque to the session


class Session(Generic[C]):
    """One AMQP connection's protocol state. `channel_max`, `frame_max` and `heartbeat` are the
    server's offer in connection.tune; `mechanisms` the authentication mechanisms offered in
    connection.start."""

    def __init__(self, *, mechanisms: Sequence[str], server_properties: dict[str, Any],
                 channel_max: int, frame_max: int, heartbeat: int) -> None:
        self.state = State.AWAITING_HEADER
        self.reader = codec.FrameReader(FRAME_MIN_SIZE)
        self.mechanisms = list(mechanisms)
        self.server_properties = server_properties
        self.offer = (channel_max, frame_max, heartbeat)
        # Negotiated (the offer's channel_max until tune-ok, as RabbitMQ shows it).
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = channel_max
        self.heartbeat = 0
        self.mechanism = ""
        self.client_properties: dict[str, Any] = {}
        self.channels: dict[int, C] = {}
        self._header = b""
        self._close_ok_sent = False
        self._missed_ticks = 0

    def start(self) -> list[Action]:
        """The socket is accepted: the handshake must end in time."""
        return [CloseSocket(HANDSHAKE_TIMEOUT, HANDSHAKE_TIMED_OUT)]

    def capability(self, name: str) -> bool:
        """Whether the client's start-ok advertised `name` in its capabilities table (as
        RabbitMQ reads it: the value must be the boolean true). RabbitMQ consults only
        consumer_cancel_notify, connection.blocked and authentication_failure_close."""
        capabilities = self.client_properties.get("capabilities")
        return isinstance(capabilities, dict) and capabilities.get(name) is True

    # -- input ------------------------------------------------------------------------------

    def receive_header(self, data: bytes) -> tuple[list[Action], bytes]:
        """Bytes read in state AWAITING_HEADER: the actions, and the bytes after the protocol
        header (frames, for `reader`)."""
        data = self._header + data
        if len(data) < 8:  # RabbitMQ judges the header on all 8 bytes, however wrong the first
            self._header = data
            return [], b""
        self._header = b""
        if data[:8] == PROTOCOL_HEADER:
            self.state = State.AWAITING_START_OK
            start = spec.Connection.Start(
                version_major=0, version_minor=9, server_properties=self.server_properties,
                mechanisms=" ".join(self.mechanisms), locales="en_US",
            )
            return [Send(codec.encode_method(0, start))], data[8:]
        # Wrong protocol or version: answer with the one we speak and hang up, as RabbitMQ does.
        self.state = State.CLOSED
        return [Send(PROTOCOL_HEADER), CloseSocket()], b""

    def handle_frame(self, frame_type: int, payload: bytes) -> list[Action]:
        """A frame on channel 0 (or the READ_ERROR the reader ends a broken stream with),
        checked in RabbitMQ's order."""
        state = self.state
        if state is State.LINGERING:
            return self._frame_after_close(frame_type, payload)
        if frame_type == codec.READ_ERROR:
            raise self.reader.error
        if state is State.CLOSING and (frame_type != FRAME_METHOD or len(payload) < 4):
            return []  # RabbitMQ looks only for close and close-ok once it has sent close
        codec.check_frame(frame_type, payload)
        if frame_type == FRAME_HEARTBEAT:
            return []
        if frame_type != FRAME_METHOD:
            raise unexpected_frame(frame_type, payload)
        index = codec.method_index(payload)
        try:
            method = codec.decode_method(index, payload)
        except MalformedUtf8:  # on channel 0 RabbitMQ names the method
            raise MalformedUtf8(index >> 16, index & 0xFFFF) from None
        if state is State.CLOSING:
            # A connection.close of the client's crossing ours is not answered (RabbitMQ does
            # not answer it either): both sides go on waiting for the other's close-ok.
            if isinstance(method, spec.Connection.CloseOk):
                return self.close_socket()
            return []
        if (state, type(method)) not in TRANSITIONS:
            raise AMQPConnectionError(
                CHANNEL_ERROR, f"unexpected method in connection state {state.value}",
                index >> 16, index & 0xFFFF,
            )
        return self._event(method)

    def frame_on_new_channel(self, number: int, frame_type: int,
                             payload: bytes) -> list[Action]:
        """A frame on a channel number not in `channels`. Before the connection is open it is
        unexpected whatever it holds (dropped while closing). Then RabbitMQ's reader checks
        the frame, starts a channel (within channel_max), takes the frame apart (a content
        frame is unexpected, a method must decode), and only then does the channel want
        channel.open."""
        if self.state is not State.OPEN:
            if self.state is State.CLOSING or self.state is State.LINGERING:
                return []
            raise unexpected_frame(frame_type, payload)
        codec.check_frame(frame_type, payload)
        if frame_type == FRAME_HEARTBEAT:
            raise unexpected_frame(frame_type, payload)
        if len(self.channels) >= self.channel_max:
            raise AMQPConnectionError(
                NOT_ALLOWED,
                f"number of channels opened ({len(self.channels)}) has reached the negotiated "
                f"channel_max ({self.channel_max})",
            )
        if frame_type != FRAME_METHOD:
            raise AMQPConnectionError(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        index = codec.method_index(payload)
        codec.decode_method(index, payload)
        if index != spec.Channel.Open.index:
            if index == BASIC_PUBLISH or index in SERVER_CONTENT_METHODS:
                return [AwaitChannelContent(number, index)]
            raise AMQPConnectionError(
                CHANNEL_ERROR, "expected 'channel.open'", index >> 16, index & 0xFFFF
            )
        return [OpenChannel(number),
                Send(codec.encode_method(number, spec.Channel.OpenOk()))]

    # -- the adapter's answers --------------------------------------------------------------

    def login_accepted(self) -> list[Action]:
        return self._event(LoginAccepted())

    def login_refused(self, username: str) -> list[Action]:
        """Raises the refusal: connection.close 403 to a client with the
        authentication_failure_close capability, silence to the others."""
        return self._event(LoginRefused(), username)

    def vhost_opened(self) -> list[Action]:
        return self._event(VhostOpened())

    def close_confirmed(self) -> list[Action]:
        return self._event(CloseConfirmed())

    def _event(self, event: Any, *arguments: Any) -> list[Action]:
        next_state, handler = TRANSITIONS[self.state, type(event)]
        actions = handler(self, event, *arguments)
        self.state = next_state
        return actions

    # -- the handlers of TRANSITIONS --------------------------------------------------------

    def _on_start_ok(self, method: spec.Connection.StartOk) -> list[Action]:
        self.client_properties = method.client_properties or {}
        mechanism = self.mechanism = method.mechanism
        if mechanism not in self.mechanisms:
            raise HandshakeRefused(f"unsupported authentication mechanism '{mechanism}'")
        if mechanism == "EXTERNAL":
            return [Authenticate(mechanism, "", "")]
        parse = parse_plain if mechanism == "PLAIN" else parse_amqplain
        return [Authenticate(mechanism, *parse(method.response))]

    def _send_tune(self, _: LoginAccepted) -> list[Action]:
        channel_max, frame_max, heartbeat = self.offer
        return [Send(codec.encode_method(0, spec.Connection.Tune(
            channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat)))]

    def _refuse_login(self, _: LoginRefused, username: str) -> list[Action]:
        if not self.capability("authentication_failure_close"):
            raise HandshakeRefused(f"login refused for user '{username}'")
        raise AMQPConnectionError(
            ACCESS_REFUSED,
            f"Login was refused using authentication mechanism {self.mechanism}. "
            "For details see the broker logfile.",
        )

    def _on_tune_ok(self, method: spec.Connection.TuneOk) -> list[Action]:
        channel_max, frame_max, _ = self.offer
        if not FRAME_MIN_SIZE <= method.frame_max <= frame_max:
            raise HandshakeRefused(
                f"negotiated frame_max = {method.frame_max} is outside "
                f"[{FRAME_MIN_SIZE}, {frame_max}]"
            )
        if not 0 < method.channel_max <= channel_max:
            raise HandshakeRefused(
                f"negotiated channel_max = {method.channel_max} is outside [1, {channel_max}]"
            )
        self.frame_max = self.reader.frame_max = method.frame_max
        self.channel_max = method.channel_max
        self.heartbeat = method.heartbeat
        return [Tuned(self.frame_max, self.channel_max, self.heartbeat)]

    def _on_open(self, method: spec.Connection.Open) -> list[Action]:
        return [OpenVhost(method.virtual_host)]

    def _send_open_ok(self, _: VhostOpened) -> list[Action]:
        return [Send(codec.encode_method(0, spec.Connection.OpenOk())),
                StartHeartbeats(self.heartbeat / 2)]

    def _on_close(self, method: spec.Connection.Close) -> list[Action]:
        """The client closes: its channels go at once; close-ok follows the confirms of
        everything it published, and then the socket is left for the client to close
        (LINGER_TIMEOUT is also the limit on waiting for the disk: a failing log never
        confirms)."""
        return [CloseSocket(LINGER_TIMEOUT),
                ClientClosed(method.reply_code, method.reply_text, self.take_channels())]

    def _send_close_ok(self, _: CloseConfirmed) -> list[Action]:
        self._close_ok_sent = True
        return [Send(codec.encode_method(0, spec.Connection.CloseOk()))]

    def _frame_after_close(self, frame_type: int, payload: bytes) -> list[Action]:
        """A frame on channel 0 after the client's connection.close: like RabbitMQ, a repeated
        connection.close gets close-ok again; anything else is dropped."""
        if (frame_type == FRAME_METHOD and self._close_ok_sent and len(payload) >= 4
                and codec.method_index(payload) == spec.Connection.Close.index):
            return [Send(codec.encode_method(0, spec.Connection.CloseOk()))]
        return []

    def _on_update_secret(self, method: spec.Connection.UpdateSecret) -> list[Action]:
        """Credential rotation (pika's and aiormq's update_secret). RabbitMQ's internal backend
        takes any new secret without checking it (only expiring credentials, such as OAuth
        tokens, are re-validated), and so does Warren: the user is already authenticated."""
        return [SecretUpdated(method.reason),
                Send(codec.encode_method(0, spec.Connection.UpdateSecretOk()))]

    # -- heartbeats -------------------------------------------------------------------------

    def heartbeat_tick(self, received: bool, sent: bool) -> list[Action]:
        """Every half heartbeat interval: whether anything was read (or the connection was
        blocked, so not read) and anything sent since the last tick. Two whole intervals of
        silence end the connection; a heartbeat goes out when we sent nothing."""
        if received:
            self._missed_ticks = 0
        else:
            self._missed_ticks += 1
            if self._missed_ticks >= MISSED_TICKS:
                return self.close_socket(MISSED_HEARTBEATS)
        return [] if sent else [Send(codec.HEARTBEAT_FRAME)]

    # -- closing ----------------------------------------------------------------------------

    def fail(self, error: AMQPError) -> list[Action]:
        """How RabbitMQ answers `error` in the current state."""
        state = self.state
        if state is State.LINGERING:  # e.g. garbage after connection.close: hang up
            return self.close_socket()
        if state in _HANDSHAKE and not _answered_in_handshake(state, error):
            if isinstance(error, UnknownMethod):
                return self.close_socket()  # RabbitMQ's reader crashes: the socket goes at once
            return self.refuse()
        if error.reply_code == FRAME_ERROR or state in (
            State.AWAITING_HEADER, State.CLOSING, State.CLOSED
        ):
            # After a framing error the stream cannot be trusted: say why, then hang up.
            actions = [self._close_frame(error.reply_code, error.reply_text, error.class_id,
                                         error.method_id)]
            return actions + self.close_socket()
        return self._begin_close(error.reply_code, error.reply_text, error.class_id,
                                 error.method_id)

    def close_forced(self, reason: str) -> list[Action]:
        """Server-initiated close (shutdown, management): 320 CONNECTION_FORCED."""
        if self.state is State.OPEN:
            return self._begin_close(CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}", 0, 0)
        return self.close_socket()

    def refuse(self) -> list[Action]:
        """A handshake RabbitMQ refuses without a word (a client guessing passwords or retrying
        garbage learns nothing fast)."""
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        return [Refuse(SILENT_CLOSE_DELAY)]

    def close_socket(self, reason: str = "") -> list[Action]:
        """Close the socket now, unless it is closed already."""
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        return [CloseSocket(0.0, reason)]

    def connection_lost(self) -> list[C]:
        """The socket is gone: the channels still in the table, taken out of it."""
        self.state = State.CLOSED
        return self.take_channels()

    def take_channels(self) -> list[C]:
        """Every channel of the table, which is left empty."""
        channels = list(self.channels.values())
        self.channels.clear()
        return channels

    def channel_made(self, number: int, channel: C) -> None:
        """The adapter's answer to OpenChannel and AwaitChannelContent: its channel object."""
        self.channels[number] = channel

    def channel_closed(self, number: int) -> None:
        """The channel's close handshake is over: the number is free again."""
        self.channels.pop(number, None)

    def _begin_close(self, code: int, text: str, class_id: int, method_id: int) -> list[Action]:
        self.state = State.CLOSING
        return [CloseChannels(self.take_channels()),
                self._close_frame(code, text, class_id, method_id), CloseSocket(CLOSE_OK_TIMEOUT)]

    @staticmethod
    def _close_frame(code: int, text: str, class_id: int, method_id: int) -> Send:
        return Send(codec.encode_method(
            0, spec.Connection.Close(code, fit_shortstr(text), class_id, method_id)))


def _answered_in_handshake(state: State, error: AMQPError) -> bool:
    """Whether RabbitMQ 3.10 answers this error with connection.close before the connection is
    open (otherwise: no frame, socket closed SILENT_CLOSE_DELAY seconds later). It answers a
    refused login (only to a client with the authentication_failure_close capability, see
    _refuse_login) and, once tuned, every AMQP error but arguments that do not decode (its
    decoder's failure is no AMQP error there)."""
    if state is State.AWAITING_START_OK:
        return error.reply_code == ACCESS_REFUSED
    if state is State.AWAITING_OPEN:
        return not isinstance(error, UndecodableMethod | UnknownMethod)
    return False


# (state, event) -> (next state, handler). An event is the method class of a frame on channel
# 0 or one of the adapter's answers; a pair not here is an unexpected method (504).
TRANSITIONS: dict[tuple[State, type], tuple[State, Callable[..., list[Action]]]] = {
    (State.AWAITING_START_OK, spec.Connection.StartOk):
        (State.AWAITING_START_OK, Session._on_start_ok),  # -> Authenticate
    (State.AWAITING_START_OK, LoginAccepted): (State.AWAITING_TUNE_OK, Session._send_tune),
    (State.AWAITING_START_OK, LoginRefused): (State.AWAITING_START_OK, Session._refuse_login),
    (State.AWAITING_TUNE_OK, spec.Connection.TuneOk): (State.AWAITING_OPEN, Session._on_tune_ok),
    (State.AWAITING_OPEN, spec.Connection.Open):
        (State.AWAITING_OPEN, Session._on_open),  # -> OpenVhost
    (State.AWAITING_OPEN, VhostOpened): (State.OPEN, Session._send_open_ok),
    (State.OPEN, spec.Connection.Close): (State.LINGERING, Session._on_close),
    (State.OPEN, spec.Connection.UpdateSecret): (State.OPEN, Session._on_update_secret),
    (State.LINGERING, CloseConfirmed): (State.LINGERING, Session._send_close_ok),
}


def parse_plain(response: Any) -> tuple[str, str]:
    """PLAIN's response: authorization id, user name and password, separated by NUL."""
    raw = response.encode() if isinstance(response, str) else bytes(response)
    parts = raw.split(b"\x00")
    if len(parts) != 3:
        raise HandshakeRefused("malformed PLAIN response")
    return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")


def parse_amqplain(response: Any) -> tuple[str, str]:
    """AMQPLAIN's response: a field table without its length, holding LOGIN and PASSWORD."""
    raw = response.encode() if isinstance(response, str) else bytes(response)
    try:
        _, table = pamqp_decode.field_table(struct.pack("!I", len(raw)) + raw)
    except Exception as exc:
        raise HandshakeRefused("malformed AMQPLAIN response") from exc
    if "LOGIN" not in table or "PASSWORD" not in table:
        raise HandshakeRefused("AMQPLAIN response without LOGIN and PASSWORD")
    login, password = table["LOGIN"], table["PASSWORD"]
    return (
        login.decode() if isinstance(login, bytes) else str(login),
        password.decode() if isinstance(password, bytes) else str(password),
    )
