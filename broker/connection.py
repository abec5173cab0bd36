"""An AMQP connection: handshake (start/tune/open), authentication, the channel table,
heartbeats, connection.close both ways, output handed to the transport (which collects it per
event-loop turn), and blocking publishers while a resource alarm is in effect. The one place
an AMQP error ends something: a channel error from a channel closes that channel
(`_handle_frame`), a connection error closes the connection and any other exception is an
internal error that costs this connection only (`_guarded`).

Blocking follows RabbitMQ 3.10's reader: while an alarm is in effect, a connection is blocked
right after it hands us a content header or body frame (a publish). Blocked, it reads nothing
more from its socket (frames already read are held, in order, not dropped), its heartbeat
monitor is paused (it still sends heartbeats), its deliveries keep flowing out, and a client
that advertised the `connection.blocked` capability is sent connection.blocked. When no alarm
is left it is sent connection.unblocked and reading resumes with the held frames. Connections
that do not publish are never blocked (the management API shows them as "blocking").
"""

from __future__ import annotations

import asyncio
import logging
import platform
import struct
import time
from enum import Enum
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec
from pamqp import decode as pamqp_decode

from broker import RABBITMQ_VERSION, __version__
from broker.alarms import blocked_reason
from broker.auth import is_loopback
from broker.channel import SERVER_CONTENT_METHODS, Channel
from broker.listeners import show
from broker.node import node_name
from broker.tls import login_name, peer_certificate
from protocol import codec
from protocol.constants import (
    ACCESS_REFUSED,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    CONNECTION_FORCED,
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
)
from protocol.errors import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    MalformedUtf8,
    UndecodableMethod,
    UnknownMethod,
    fit_shortstr,
    unexpected_frame,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from broker.auth import User
    from broker.node import Node
    from broker.queue import Queue
    from broker.transport import Transport
    from broker.vhost import VirtualHost

log = logging.getLogger(__name__)

CLOSE_OK_TIMEOUT = 3.0  # seconds we wait for connection.close-ok before dropping the socket
# After our close-ok to a client's connection.close, RabbitMQ leaves closing the socket to the
# client (closing first, with bytes of the client's unread, would make the kernel send a reset
# that can destroy the close-ok): we read and discard until it does, or for this long.
LINGER_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 10.0
SILENT_CLOSE_DELAY = 3.0  # a failed handshake keeps its socket this long, without a word
_CONTENT_FRAMES = (FRAME_HEADER, FRAME_BODY)  # a publish in progress


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


class HandshakeRefused(Exception):
    """The handshake cannot go on and RabbitMQ would say nothing: the socket is closed, after
    SILENT_CLOSE_DELAY seconds (close_with_error says which errors end a handshake so)."""


def server_properties() -> dict[str, Any]:
    """connection.start's server properties. `product` and `version` are RabbitMQ's because
    clients pick behaviour by them: kombu (so Celery) sends basic.qos global=true only to
    "RabbitMQ" 3.3-3.x, and with global=false a Celery worker cannot raise the prefetch of its
    running consumer for held ETA tasks (RabbitMQ's per-consumer semantics, which Warren has).
    Warren names itself in `information`."""
    return {
        "capabilities": {
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
            "basic.nack": True,
            "consumer_cancel_notify": True,
            "connection.blocked": True,
            "consumer_priorities": True,
            "authentication_failure_close": True,
            "per_consumer_qos": True,
            "direct_reply_to": True,
        },
        "cluster_name": node_name(),
        "copyright": "Copyright (c) 2026 The Warren authors",
        "information": f"Warren {__version__}. Licensed under the Apache License 2.0. "
                       "Website: https://warren.invalid",
        "platform": f"Python {platform.python_version()}",
        "product": "RabbitMQ",
        "version": RABBITMQ_VERSION,
    }


class Connection:
    def __init__(self, node: Node, transport: Transport, peer: tuple[str, int] | None) -> None:
        self.node = node
        self.transport = transport
        # (host, port): an IPv6 socket address has two more items, which nothing here uses
        self.peer = (peer[0], peer[1]) if peer else None
        local = transport.local_address
        self.local = (local[0], local[1]) if local else None
        self.name = show(*self.peer) if self.peer else "unknown"
        # RabbitMQ's connection name: "127.0.0.1:50880 -> 127.0.0.1:5672", "[::1]:50880 -> ..."
        self.display_name = f"{self.name} -> {show(*self.local) if self.local else 'unknown'}"
        self.connected_at = time.time()
        self.auth_mechanism = ""
        self.state = State.AWAITING_HEADER
        self.reader = codec.FrameReader(FRAME_MIN_SIZE)
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = node.config.channel_max
        self.heartbeat = 0
        self.user: User | None = None
        self.vhost: VirtualHost | None = None
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: list[Queue] = []
        self.client_properties: dict[str, Any] = {}
        self.writable = True
        self._close_ok_sent = False
        self._header_buffer = b""
        self.publish_cache: dict[bytes, codec.Publish] = {}  # basic.publish payload -> decoded
        self.properties_cache: dict[bytes, bytes] = {}
        self._confirm_channels: list[Channel] = []
        self._received_since_tick = True
        self._sent_since_tick = False
        self._missed_ticks = 0
        self._timer: asyncio.TimerHandle | None = None
        # Resource alarms: the node's set of alarms in effect (shared, never copied), whether we
        # stopped reading because this connection published during one, and what was read.
        self._alarms = node.alarms.active
        self.blocked = False
        self._blocked_sent = False
        self._held: list[codec.Frame] = []
        self._failure: AMQPConnectionError | None = None  # see fail_after_input
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        log.info("accepting AMQP connection %s", self.display_name)

    # -- output ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._sent_since_tick = True
        self.transport.write(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.write(codec.encode_method(channel, method))

    def confirms_due(self, channel: Channel) -> None:
        if not self._confirm_channels or self._confirm_channels[-1] is not channel:
            self._confirm_channels.append(channel)

    # -- input ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._received_since_tick = True
        if self.state is not State.CLOSED:
            self._guarded(self._receive, data)

    def _receive(self, data: bytes) -> None:
        if self.state is State.AWAITING_HEADER:
            data = self._read_protocol_header(data)
            if not data:
                return
        if self.blocked or self._held:  # a transport that still delivers while paused
            self._held.extend(self.reader.feed(data))
            return
        self._handle_frames(self.reader.feed(data))
        while self.reader.stalled and self.state is not State.CLOSED:  # frame_max was tuned
            if self.blocked:
                self._held.extend(self.reader.feed(b""))
                return
            self._handle_frames(self.reader.feed(b""))

    def _guarded(self, handle: Callable[[Any], None], argument: Any) -> None:
        """Run an input handler: AMQP errors close the connection, bugs cost only this one;
        confirms earned meanwhile go out together."""
        try:
            handle(argument)
            if self._failure is not None:
                raise self._failure
        except AMQPConnectionError as error:
            self._failure = None
            self.close_with_error(error)
        except HandshakeRefused as refusal:
            log.warning("connection %s: handshake refused: %s", self.display_name, refusal)
            self._refuse()
        except Exception:  # a bug must cost one connection, never the broker
            log.exception("internal error on connection %s", self.display_name)
            self.close_with_error(AMQPConnectionError(INTERNAL_ERROR, "internal error"))
        finally:
            if self._confirm_channels:
                for channel in self._confirm_channels:
                    channel.flush_confirms()
                self._confirm_channels.clear()

    def fail_after_input(self, error: AMQPConnectionError) -> None:
        """Close the connection with `error` once the input read with this frame is handled
        (unless a frame after it fails first): how a channel process's crash reaches RabbitMQ's
        reader."""
        if self._failure is None:
            self._failure = error

    def _handle_frames(self, frames: Iterable[codec.Frame]) -> None:
        alarms = self._alarms
        frames = iter(frames)
        for frame_type, channel_number, payload in frames:
            self._handle_frame(frame_type, channel_number, payload)
            if self.state is State.CLOSED:
                return
            if alarms and frame_type in _CONTENT_FRAMES and self.state is State.OPEN:
                self._block(frames)  # RabbitMQ blocks after a header or body frame
                return

    def _read_protocol_header(self, data: bytes) -> bytes:
        data = self._header_buffer + data
        if len(data) < 8:  # RabbitMQ judges the header on all 8 bytes, however wrong the first
            self._header_buffer = data
            return b""
        if data[:8] == PROTOCOL_HEADER:
            self._header_buffer = b""
            self.state = State.AWAITING_START_OK
            self.send_method(0, spec.Connection.Start(
                version_major=0, version_minor=9, server_properties=server_properties(),
                mechanisms=" ".join(self._mechanisms()), locales="en_US",
            ))
            return data[8:]
        # Wrong protocol or version: answer with the one we speak and hang up, as RabbitMQ does.
        self.transport.write(PROTOCOL_HEADER)
        self.state = State.CLOSED
        self.transport.close()
        return b""

    def _handle_frame(self, frame_type: int, channel_number: int, payload: bytes) -> None:
        """One frame, checked in RabbitMQ's order: a frame on a channel before the connection
        is open is unexpected whatever it holds; otherwise what kind of frame it is
        (codec.check_frame, inline in Channel.handle_frame), then the channel's state."""
        if channel_number:
            if self.state is not State.OPEN:
                if self.state is State.CLOSING or self.state is State.LINGERING:
                    return
                raise unexpected_frame(frame_type, payload)
            channel = self.channels.get(channel_number)
            if channel is not None:
                try:
                    channel.handle_frame(frame_type, payload)
                except AMQPChannelError as error:
                    channel.close_with_error(error)
                return
            self._open_channel(channel_number, frame_type, payload)
            return
        if self.state is State.LINGERING:
            self._frame_after_close(frame_type, payload)
            return
        if frame_type == codec.READ_ERROR:
            raise self.reader.error
        if self.state is State.CLOSING and (frame_type != FRAME_METHOD or len(payload) < 4):
            return  # RabbitMQ looks only for close and close-ok once it has sent close
        codec.check_frame(frame_type, payload)
        if frame_type == FRAME_HEARTBEAT:
            return
        if frame_type != FRAME_METHOD:
            raise unexpected_frame(frame_type, payload)
        index = codec.method_index(payload)
        try:
            method = codec.decode_method(index, payload)
        except MalformedUtf8:  # on channel 0 RabbitMQ names the method
            raise MalformedUtf8(index >> 16, index & 0xFFFF) from None
        if self.state is State.CLOSING:
            # A connection.close of the client's crossing ours is not answered (RabbitMQ does
            # not answer it either): both sides go on waiting for the other's close-ok.
            if isinstance(method, spec.Connection.CloseOk):
                self._shutdown()
            return
        handler = _CONNECTION_HANDLERS.get((self.state, type(method)))
        if handler is None:
            raise AMQPConnectionError(
                CHANNEL_ERROR, f"unexpected method in connection state {self.state.value}",
                index >> 16, index & 0xFFFF,
            )
        handler(self, method)

    def _open_channel(self, number: int, frame_type: int, payload: bytes) -> None:
        """A frame on a channel not open: RabbitMQ's reader checks the frame, starts a channel
        (within channel_max), takes the frame apart (a content frame is unexpected, a method
        must decode), and only then does the channel want channel.open."""
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
                self.channels[number] = Channel.awaiting_content(self, number, index)
                return
            raise AMQPConnectionError(
                CHANNEL_ERROR, "expected 'channel.open'", index >> 16, index & 0xFFFF
            )
        self.channels[number] = Channel(self, number)
        self.send_method(number, spec.Channel.OpenOk())

    def channel_closed(self, channel: Channel) -> None:
        self.channels.pop(channel.number, None)

    # -- handshake ------------------------------------------------------------------------

    def capability(self, name: str) -> bool:
        """Whether the client's start-ok advertised `name` in its capabilities table (as
        RabbitMQ reads it: the value must be the boolean true). RabbitMQ consults only
        consumer_cancel_notify, connection.blocked and authentication_failure_close."""
        capabilities = self.client_properties.get("capabilities")
        return isinstance(capabilities, dict) and capabilities.get(name) is True

    def _mechanisms(self) -> list[str]:
        """The configured mechanisms; EXTERNAL only where there is TLS to take a name from."""
        return [name for name in self.node.config.auth_mechanisms
                if name != "EXTERNAL" or self.transport.tls is not None]

    def _on_start_ok(self, method: spec.Connection.StartOk) -> None:
        self.client_properties = method.client_properties or {}
        mechanism = self.auth_mechanism = method.mechanism
        if mechanism not in self._mechanisms():
            raise HandshakeRefused(f"unsupported authentication mechanism '{mechanism}'")
        loopback = self.peer is None or is_loopback(self.peer[0])
        if mechanism == "EXTERNAL":
            username, why = self._certificate_user()
            self.user = self.node.access.authenticate_external(username, loopback)
        else:
            parse = _parse_plain if mechanism == "PLAIN" else _parse_amqplain
            username, password = parse(method.response)
            why = f"user '{username}' - invalid credentials"
            self.user = self.node.access.authenticate(username, password, loopback)
        if self.user is None:
            log.error("Error on AMQP connection %s (state: starting): %s login refused: %s",
                      self.display_name, mechanism, why)
            if not self.capability("authentication_failure_close"):
                raise HandshakeRefused(f"login refused for user '{username}'")
            raise AMQPConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile.",
            )
        config = self.node.config
        self.state = State.AWAITING_TUNE_OK
        self.send_method(0, spec.Connection.Tune(
            channel_max=config.channel_max, frame_max=config.frame_max,
            heartbeat=config.heartbeat,
        ))

    def _certificate_user(self) -> tuple[str, str]:
        """EXTERNAL: the user name the client's certificate gives, and why it may be refused."""
        certificate = peer_certificate(self.transport.tls)
        if certificate is None:
            return "", "connection peer presented no TLS (x.509) certificate"
        name = login_name(certificate, self.node.config.ssl_cert_login_from)
        if name is None:
            return "", "no name found"
        return name, f"user '{name}' - not found"

    def _on_tune_ok(self, method: spec.Connection.TuneOk) -> None:
        config = self.node.config
        if not FRAME_MIN_SIZE <= method.frame_max <= config.frame_max:
            raise HandshakeRefused(
                f"negotiated frame_max = {method.frame_max} is outside "
                f"[{FRAME_MIN_SIZE}, {config.frame_max}]"
            )
        if not 0 < method.channel_max <= config.channel_max:
            raise HandshakeRefused(
                f"negotiated channel_max = {method.channel_max} is outside "
                f"[1, {config.channel_max}]"
            )
        self.frame_max = method.frame_max
        self.reader.frame_max = self.frame_max
        self.channel_max = method.channel_max
        self.heartbeat = method.heartbeat
        self.state = State.AWAITING_OPEN

    def _on_open(self, method: spec.Connection.Open) -> None:
        vhost = self.node.vhosts.get(method.virtual_host)
        if vhost is None:
            raise AMQPConnectionError(
                NOT_ALLOWED, f"vhost {method.virtual_host} not found", 10, 40
            )
        if self.node.access.permission(self.user.name, vhost.name) is None:
            raise AMQPConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost.name}' refused for user '{self.user.name}'", 10, 40,
            )
        limit = self.node.config.max_connections
        if limit and len(self.node.connections) >= limit:
            raise AMQPConnectionError(
                NOT_ALLOWED, f"connection refused: node connection limit ({limit}) is reached",
                10, 40,
            )
        self.vhost = vhost
        self.state = State.OPEN
        self.send_method(0, spec.Connection.OpenOk())
        self.node.connections.add(self)
        log.info("connection %s: user '%s' authenticated and granted access to vhost '%s'",
                 self.display_name, self.user.name, vhost.name)
        self._start_heartbeats()

    def _on_close(self, method: spec.Connection.Close) -> None:
        """The client closes: its channels go at once; close-ok follows the confirms of
        everything it published (after the disk, for persistent messages), and then the socket
        is left for the client to close."""
        log.debug("connection %s: closed by client (%s %s)", self.display_name,
                  method.reply_code, method.reply_text)
        self.state = State.LINGERING
        if self._timer is not None:
            self._timer.cancel()
        # also the limit on waiting for the disk (a failing log never confirms)
        self._timer = self._loop.call_later(LINGER_TIMEOUT, self._shutdown)
        channels = list(self.channels.values())
        self._release_everything()
        waiting = len(channels) + 1

        def confirmed() -> None:
            nonlocal waiting
            waiting -= 1
            if waiting == 0 and self.state is State.LINGERING:
                self._close_ok_sent = True
                self.send_method(0, spec.Connection.CloseOk())

        for channel in channels:
            channel.when_confirmed(confirmed)
        confirmed()

    def _frame_after_close(self, frame_type: int, payload: bytes) -> None:
        """A frame on channel 0 after the client's connection.close: like RabbitMQ, a repeated
        connection.close gets close-ok again; anything else is dropped."""
        if (frame_type == FRAME_METHOD and self._close_ok_sent and len(payload) >= 4
                and codec.method_index(payload) == spec.Connection.Close.index):
            self.send_method(0, spec.Connection.CloseOk())

    def _on_update_secret(self, method: spec.Connection.UpdateSecret) -> None:
        """Credential rotation (pika's and aiormq's update_secret). RabbitMQ's internal backend
        takes any new secret without checking it (only expiring credentials, such as OAuth
        tokens, are re-validated), and so does Warren: the user is already authenticated."""
        log.info("connection %s: user '%s' updated secret, reason: %s", self.display_name,
                 self.user.name, method.reason)
        self.send_method(0, spec.Connection.UpdateSecretOk())

    def _handshake_timeout(self) -> None:
        if self.state is not State.OPEN and self.state is not State.CLOSED:
            log.warning("closing AMQP connection %s: handshake timeout (state: %s)",
                        self.display_name, self.state.value)
            self._shutdown()

    # -- heartbeats -----------------------------------------------------------------------

    def _start_heartbeats(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.heartbeat:
            self._timer = self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        if self.state is State.CLOSED:
            return
        if self._received_since_tick or self.blocked:  # we do not read a blocked connection
            self._missed_ticks = 0
        else:
            self._missed_ticks += 1
            if self._missed_ticks >= 4:  # two whole heartbeat intervals of silence
                log.error("closing AMQP connection %s (vhost: '%s', user: '%s'): missed "
                          "heartbeats from client, timeout: %ss", self.display_name,
                          self.vhost.name, self.user.name, self.heartbeat)
                self._shutdown()
                return
        self._received_since_tick = False
        if not self._sent_since_tick:
            self.transport.write(codec.HEARTBEAT_FRAME)
        self._sent_since_tick = False
        self._timer = self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    # -- closing --------------------------------------------------------------------------

    def close_with_error(self, error: AMQPError) -> None:
        if self.state is State.LINGERING:  # e.g. garbage after connection.close: hang up
            self._shutdown()
            return
        log.error("Error on AMQP connection %s (state: %s): %s (class %s method %s)",
                  self.display_name, self.state.value, error.reply_text, error.class_id,
                  error.method_id)
        if self.state in _HANDSHAKE and not _answered_in_handshake(self.state, error):
            if isinstance(error, UnknownMethod):
                self._shutdown()  # RabbitMQ's reader crashes: the socket goes at once
            else:
                self._refuse()
            return
        if error.reply_code == FRAME_ERROR or self.state in (
            State.AWAITING_HEADER, State.CLOSING, State.CLOSED
        ):
            # After a framing error the stream cannot be trusted: say why, then hang up.
            self._send_close(error.reply_code, error.reply_text, error.class_id, error.method_id)
            self._shutdown()
            return
        self._begin_close(error.reply_code, error.reply_text, error.class_id, error.method_id)

    def close_forced(self, reason: str) -> None:
        """Server-initiated close (shutdown, management): 320 CONNECTION_FORCED."""
        if self.state is State.OPEN:
            self._begin_close(CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}", 0, 0)
        else:
            self._shutdown()

    def _begin_close(self, code: int, text: str, class_id: int, method_id: int) -> None:
        if self.blocked:  # read again: the client's close-ok must reach us
            self.blocked = False
            self._loop.call_soon(self._resume_reading)
        self.release_channels()
        self._send_close(code, text, class_id, method_id)
        self.state = State.CLOSING
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(CLOSE_OK_TIMEOUT, self._shutdown)

    def _send_close(self, code: int, text: str, class_id: int, method_id: int) -> None:
        text = fit_shortstr(text)
        self.send_method(0, spec.Connection.Close(code, text, class_id, method_id))

    def release_channels(self) -> None:
        for channel in list(self.channels.values()):
            channel.release()
        self.channels.clear()

    def _release_everything(self) -> None:
        """The connection is over for the broker: channels, exclusive queues, its place."""
        self.release_channels()
        for queue in list(self.exclusive_queues):
            queue.vhost.delete_queue(queue)
        self.node.connections.discard(self)

    def _refuse(self) -> None:
        """A handshake RabbitMQ refuses without a word: no frame; nothing more is read (not even
        the rest of this read) and the socket is closed SILENT_CLOSE_DELAY seconds later, as it
        does (a client guessing passwords or retrying garbage learns nothing fast). Cleanup
        follows in connection_lost."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.transport.pause_reading()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(SILENT_CLOSE_DELAY, self.transport.close)

    def _shutdown(self) -> None:
        """Close the socket; cleanup follows in connection_lost."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.transport.close()

    def connection_lost(self) -> None:
        unexpected = self.state is State.OPEN
        self.state = State.CLOSED
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release_everything()
        if unexpected:
            log.warning("closing AMQP connection %s (vhost: '%s', user: '%s'): client "
                        "unexpectedly closed TCP connection", self.display_name,
                        self.vhost.name, self.user.name)
        elif self.vhost is not None:
            log.info("closing AMQP connection %s (vhost: '%s', user: '%s')", self.display_name,
                     self.vhost.name, self.user.name)

    # -- resource alarms ------------------------------------------------------------------

    def _block(self, rest: Iterator[codec.Frame]) -> None:
        """It published while an alarm is in effect: hold what is left, stop reading."""
        self.blocked = True
        self._held.extend(rest)
        self.transport.pause_reading()
        if self.capability("connection.blocked"):
            self._blocked_sent = True
            self.send_method(0, spec.Connection.Blocked(blocked_reason(self._alarms)))

    def alarms_changed(self) -> None:
        """The node raised or cleared an alarm: with none left, a blocked connection goes on."""
        if not self.blocked or self._alarms or self.state is not State.OPEN:
            return
        self.blocked = False
        self._received_since_tick = True  # the heartbeat monitor starts afresh
        self._missed_ticks = 0
        if self._blocked_sent:
            self._blocked_sent = False
            self.send_method(0, spec.Connection.Unblocked())
        self._loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        """Handle the held frames (which may block us again), then read the socket again."""
        if self.state is State.CLOSED or self.blocked:
            return
        held, self._held = self._held, []
        self._guarded(self._handle_frames, held)
        if not self.blocked and self.state is not State.CLOSED:
            self.transport.resume_reading()

    # -- flow control ---------------------------------------------------------------------

    def pause_writing(self) -> None:
        """Our output is backed up (see broker.transport): dispatch passes our consumers over."""
        self.writable = False

    def resume_writing(self) -> None:
        """Our output drained: our consumers' queues dispatch to us again."""
        self.writable = True
        for channel in list(self.channels.values()):
            channel.kick_queues()


_HANDSHAKE = (State.AWAITING_START_OK, State.AWAITING_TUNE_OK, State.AWAITING_OPEN)


def _answered_in_handshake(state: State, error: AMQPError) -> bool:
    """Whether RabbitMQ 3.10 answers this error with connection.close before the connection is
    open (otherwise: no frame, socket closed SILENT_CLOSE_DELAY seconds later). It answers a
    refused login (only to a client with the authentication_failure_close capability, see
    _on_start_ok) and, once tuned, every AMQP error but arguments that do not decode (its
    decoder's failure is no AMQP error there)."""
    if state is State.AWAITING_START_OK:
        return error.reply_code == ACCESS_REFUSED
    if state is State.AWAITING_OPEN:
        return not isinstance(error, UndecodableMethod | UnknownMethod)
    return False


_CONNECTION_HANDLERS = {
    (State.AWAITING_START_OK, spec.Connection.StartOk): Connection._on_start_ok,
    (State.AWAITING_TUNE_OK, spec.Connection.TuneOk): Connection._on_tune_ok,
    (State.AWAITING_OPEN, spec.Connection.Open): Connection._on_open,
    (State.OPEN, spec.Connection.Close): Connection._on_close,
    (State.OPEN, spec.Connection.UpdateSecret): Connection._on_update_secret,
}


def _parse_plain(response: Any) -> tuple[str, str]:
    raw = response.encode() if isinstance(response, str) else bytes(response)
    parts = raw.split(b"\x00")
    if len(parts) != 3:
        raise HandshakeRefused("malformed PLAIN response")
    return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")


def _parse_amqplain(response: Any) -> tuple[str, str]:
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

