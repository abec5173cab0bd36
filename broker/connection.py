"""The AMQP adapter of a connection: it carries out what the sans-I/O session
(protocol/session.py: handshake, close both ways, heartbeat monitor, channel table) asks, and
answers it from the broker core: authentication (broker/auth.py), the vhost
(broker/admission.py, whose refusals become 530 here, in `_open_vhost`), timers, the socket
(through the transport, which collects output per event-loop turn), and blocking publishers
while a resource alarm is in effect. The one place an AMQP error ends something: a channel
error from a channel closes that channel (`_handle_frames`), a connection error closes the
connection (the session's `fail` says how) and any other exception is an internal error that
costs this connection only (`_guarded`).

Hot path: a frame for a channel in the table goes straight to that channel
(`_handle_frames`), without passing through the session; the table is the session's
(`channels` is the same dict).

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
import ssl
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from pamqp import commands as spec

from broker import RABBITMQ_VERSION, __version__
from broker.admission import admit
from broker.alarms import blocked_reason
from broker.auth import is_loopback
from broker.channel import Channel, amqp_error
from broker.errors import BrokerError
from broker.listeners import show
from broker.node import node_name
from broker.tls import login_name, peer_certificate
from protocol import codec
from protocol.codec import PUBLISH_CONTENT, content_frames
from protocol.constants import FRAME_BODY, FRAME_HEADER, INTERNAL_ERROR
from protocol.errors import AMQPChannelError, AMQPConnectionError, AMQPError
from protocol.session import (
    HANDSHAKE_TIMEOUT,
    MISSED_HEARTBEATS,
    Action,
    Authenticate,
    AwaitChannelContent,
    ClientClosed,
    CloseChannels,
    CloseSocket,
    HandshakeRefused,
    OpenChannel,
    OpenVhost,
    Refuse,
    SecretUpdated,
    Send,
    Session,
    StartHeartbeats,
    State,
    Tuned,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from broker.auth import User
    from broker.node import Node
    from broker.publishing import PropertyFacts
    from broker.queue import Queue
    from broker.vhost import VirtualHost

__all__ = ["HANDSHAKE_TIMEOUT", "Connection", "State", "server_properties"]

log = logging.getLogger(__name__)

_CONTENT_FRAMES = (FRAME_HEADER, FRAME_BODY)  # a publish in progress
_OPEN, _CLOSED = State.OPEN, State.CLOSED


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


class ClientSocket(Protocol):
    """What a connection needs of its transport (broker/transport.py)."""

    local_address: tuple[str, int] | None
    tls: ssl.SSLObject | None
    origin: Any  # broker.transport.Origin of a connection a follower passed on, else None

    send_cnt: int  # writes to the socket so far

    def write(self, data: bytes) -> None: ...
    def write_parts(self, parts: Sequence[bytes | memoryview], size: int) -> None: ...
    def write_room(self) -> int: ...
    def sent_since(self, send_cnt: int) -> bool: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Connection:
    """One client's AMQP connection: its session, its user and vhost once open, its channels
    (the session's table) and exclusive queues (a broker.clients.ClientConnection)."""

    def __init__(self, node: Node, transport: ClientSocket, peer: tuple[str, int] | None
                 ) -> None:
        self.node = node
        self.transport = transport
        # (host, port): an IPv6 socket address has two more items, which nothing here uses
        self.peer = (peer[0], peer[1]) if peer else None
        local = transport.local_address
        self.local = (local[0], local[1]) if local else None
        self.name = show(*self.peer) if self.peer else "unknown"
        # RabbitMQ's connection name: "127.0.0.1:50880 -> 127.0.0.1:5672", "[::1]:50880 -> ..."
        self.display_name = f"{self.name} -> {show(*self.local) if self.local else 'unknown'}"
        origin = transport.origin
        self.node_name = origin.node if origin is not None else node_name()  # it connected to
        self.connected_at = time.time()
        config = node.config
        self.session: Session[Channel] = Session(
            mechanisms=self._mechanisms(), server_properties=server_properties(),
            channel_max=config.channel_max, frame_max=config.frame_max,
            heartbeat=config.heartbeat,
        )
        self.reader = self.session.reader
        self.channels = self.session.channels  # the session's table, read on the hot path
        self.frame_max = self.session.frame_max  # the session's, read on the hot path
        self.user: User | None = None
        self.vhost: VirtualHost | None = None
        self._octets_retired = (0, 0)  # socket bytes already handed to the vhost (received, sent)
        self.exclusive_queues: list[Queue] = []
        self.writable = True
        self.publish_cache: dict[bytes, codec.Publish] = {}  # basic.publish payload -> decoded
        # property bytes -> what publishing found in them (broker/publishing.py)
        self.properties_cache: dict[bytes, PropertyFacts] = {}
        self._confirm_channels: list[Channel] = []
        self._received_since_tick = True
        self._send_cnt_at_tick = 0  # the transport's socket writes at the last heartbeat tick
        self.write, self.write_parts = transport.write, transport.write_parts
        self.write_room = transport.write_room
        self._heartbeat_every = 0.0
        self._timer: asyncio.TimerHandle | None = None  # the one timer: a timeout or heartbeats
        # Resource alarms: the node's set of alarms in effect (shared, never copied), whether we
        # stopped reading because this connection published during one, and what was read.
        self._alarms = node.alarms.active
        self.blocked = False
        self._blocked_sent = False
        self._held: list[codec.Frame] = []
        self._failure: AMQPConnectionError | None = None  # see fail_after_input
        self._loop = asyncio.get_running_loop()
        self._act(self.session.start())
        log.info("accepting AMQP connection %s", self.display_name)

    # -- the session's state, as the management API and the channels read it ----------------

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def channel_max(self) -> int:
        return self.session.channel_max

    @property
    def heartbeat(self) -> int:
        return self.session.heartbeat

    @property
    def client_properties(self) -> dict[str, Any]:
        return self.session.client_properties

    @property
    def auth_mechanism(self) -> str:
        return self.session.mechanism

    def capability(self, name: str) -> bool:
        return self.session.capability(name)

    # -- output ---------------------------------------------------------------------------

    # write(data), write_parts(parts, size) and write_room() are the transport's own (bound
    # in __init__: no call layer of ours on the hot path). write_parts writes `size` bytes
    # given as consecutive pieces, joined once with the rest of the loop turn's output;
    # write_room is what may be written this turn before the connection stops taking
    # deliveries (the write that crosses it is made).

    def send_method(self, channel: int, method: Any) -> None:
        self.write(codec.encode_method(channel, method))

    def confirms_due(self, channel: Channel) -> None:
        if not self._confirm_channels or self._confirm_channels[-1] is not channel:
            self._confirm_channels.append(channel)

    # -- input ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._received_since_tick = True
        if self.session.state is not _CLOSED:
            self._guarded(self._receive, data)

    def _receive(self, data: bytes) -> None:
        session = self.session
        if session.state is State.AWAITING_HEADER:
            actions, data = session.receive_header(data)
            self._act(actions)
            if not data:
                return
        if self.blocked or self._held:  # a transport that still delivers while paused
            self._held.extend(self.reader.feed(data))
            return
        self._handle_frames(self.reader.feed(data))
        while self.reader.stalled and session.state is not _CLOSED:  # frame_max was tuned
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
            self._act(self.session.refuse())
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
        session = self.session
        channels = self.channels
        frames = iter(frames)
        for frame_type, channel_number, payload in frames:
            # A frame for a channel in the table (only an open connection has channels) goes
            # to it; any other to the session.
            channel = channels.get(channel_number) if channel_number else None
            if frame_type == PUBLISH_CONTENT:  # a whole publish (the hot path)
                try:
                    taken = channel is not None and not alarms and channel.publish_whole(payload)
                except AMQPChannelError as error:
                    channel.close_with_error(error)
                    taken = True
                if not taken:
                    # Its frames one by one: where the channel cannot take it whole, and under
                    # an alarm (which blocks the connection after the header frame).
                    self._handle_frames(content_frames(channel_number, payload))
                    if self.blocked:
                        self._held.extend(frames)
                        return
            elif channel is not None:
                try:
                    channel.handle_frame(frame_type, payload)
                except AMQPChannelError as error:
                    channel.close_with_error(error)
            else:
                self._frame_for_session(frame_type, channel_number, payload)
            if session.state is _CLOSED:
                return
            if alarms and frame_type in _CONTENT_FRAMES and session.state is _OPEN:
                self._block(frames)  # RabbitMQ blocks after a header or body frame
                return

    def _frame_for_session(self, frame_type: int, channel_number: int, payload: bytes) -> None:
        """A frame on channel 0, or on a channel not in the table."""
        if channel_number:
            self._act(self.session.frame_on_new_channel(channel_number, frame_type, payload))
        else:
            self._act(self.session.handle_frame(frame_type, payload))

    def channel_closed(self, channel: Channel) -> None:
        if self.channels.get(channel.number) is channel:
            self._retire(channel)
        self.session.channel_closed(channel.number)

    def _retire(self, channel: Channel) -> None:
        """The channel leaves the table: the node keeps its message counts (for /metrics), and
        so does its vhost (for the API's vhost message_stats)."""
        self.node.closed_channels.add(channel.stats)
        self.vhost.closed_traffic.channels.add(channel.stats)

    # -- the session's actions ------------------------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        for action in actions:
            _ACTIONS[type(action)](self, action)

    def _send(self, action: Send) -> None:
        self.write(action.data)

    def _mechanisms(self) -> list[str]:
        """The configured mechanisms; EXTERNAL only where there is TLS to take a name from."""
        return [name for name in self.node.config.auth_mechanisms
                if name != "EXTERNAL" or self.transport.tls is not None]

    def _authenticate(self, action: Authenticate) -> None:
        # As RabbitMQ (rabbit_net:is_loopback of the socket): a loopback-only user is judged
        # by the address the client connected to on this node (a client passed on by a
        # cluster's follower: the follower's), which only a client on that host can reach.
        loopback = self.local is None or is_loopback(self.local[0])
        access = self.node.access
        if action.mechanism == "EXTERNAL":
            username, why = self._certificate_user()
            login = partial(access.authenticate_external, username)
        else:
            username = action.username
            why = f"user '{username}' - invalid credentials"
            login = partial(access.authenticate, username, action.password)
        self.user = login(loopback)
        if self.user is None:
            if not loopback and login(True) is not None:
                why = f"user '{username}' can only connect via localhost"
            log.error("Error on AMQP connection %s (state: starting): %s login refused: %s",
                      self.display_name, action.mechanism, why)
            self.node.auth_attempts.count("amqp091", succeeded=False)
            self._act(self.session.login_refused(username))
            return
        self.node.auth_attempts.count("amqp091", succeeded=True)
        self._act(self.session.login_accepted())

    def _certificate_user(self) -> tuple[str, str]:
        """EXTERNAL: the user name the client's certificate gives, and why it may be refused."""
        certificate = peer_certificate(self.transport.tls)
        if certificate is None:
            return "", "connection peer presented no TLS (x.509) certificate"
        name = login_name(certificate, self.node.config.ssl_cert_login_from)
        if name is None:
            return "", "no name found"
        return name, f"user '{name}' - not found"

    def _tuned(self, action: Tuned) -> None:
        self.frame_max = action.frame_max

    def _open_vhost(self, action: OpenVhost) -> None:
        """connection.open: the core's refusals (broker/admission.py) become connection
        errors of connection.open, here and nowhere else."""
        try:
            vhost = admit(self.node, self.user, action.name)
        except BrokerError as error:
            raise amqp_error(error, spec.Connection.Open.index) from None
        self.vhost = vhost
        self._act(self.session.vhost_opened())
        self.node.connections.add(self)
        self.node.churn.connections_opened += 1
        log.info("connection %s: user '%s' authenticated and granted access to vhost '%s'",
                 self.display_name, self.user.name, vhost.name)

    def _client_closed(self, action: ClientClosed) -> None:
        log.debug("connection %s: closed by client (%s %s)", self.display_name,
                  action.reply_code, action.reply_text)
        channels = action.channels
        self._release_everything(channels)
        waiting = len(channels) + 1

        def confirmed() -> None:
            nonlocal waiting
            waiting -= 1
            if waiting == 0 and self.session.state is State.LINGERING:
                self._act(self.session.close_confirmed())

        for channel in channels:
            channel.when_confirmed(confirmed)
        confirmed()

    def _secret_updated(self, action: SecretUpdated) -> None:
        log.info("connection %s: user '%s' updated secret, reason: %s", self.display_name,
                 self.user.name, action.reason)

    def _open_channel(self, action: OpenChannel) -> None:
        self.session.channel_made(action.number, Channel(self, action.number))
        self.node.churn.channels_opened += 1

    def _await_channel_content(self, action: AwaitChannelContent) -> None:
        self.session.channel_made(
            action.number, Channel.awaiting_content(self, action.number, action.index))

    def _close_channels(self, action: CloseChannels) -> None:
        if self.blocked:  # read again: the client's close-ok must reach us
            self.blocked = False
            self._loop.call_soon(self._resume_reading)
        for channel in action.channels:
            self._retire(channel)
            channel.release()

    def _close_socket(self, action: CloseSocket) -> None:
        self._cancel_timer()
        if action.after:
            self._timer = self._loop.call_later(action.after, self._timed_out, action.reason)
            return
        if action.reason == MISSED_HEARTBEATS:
            log.error("closing AMQP connection %s (vhost: '%s', user: '%s'): missed "
                      "heartbeats from client, timeout: %ss", self.display_name,
                      self.vhost.name, self.user.name, self.session.heartbeat)
        self.transport.close()  # cleanup follows in connection_lost

    def _timed_out(self, reason: str) -> None:
        if reason:
            log.warning("closing AMQP connection %s: %s (state: %s)", self.display_name,
                        reason, self.session.state.value)
        self._timer = None
        self._act(self.session.close_socket())

    def _refuse(self, action: Refuse) -> None:
        """No frame; nothing more is read (not even the rest of this read); the socket is
        closed later. Cleanup follows in connection_lost."""
        self.transport.pause_reading()
        self._cancel_timer()
        self._timer = self._loop.call_later(action.after, self.transport.close)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- heartbeats -----------------------------------------------------------------------

    def _start_heartbeats(self, action: StartHeartbeats) -> None:
        self._cancel_timer()
        self._heartbeat_every = action.every
        if action.every:
            self._timer = self._loop.call_later(action.every, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        if self.session.state is _CLOSED:
            return
        # A blocked connection is not read: its silence is ours.
        received = self._received_since_tick or self.blocked
        self._received_since_tick = False
        transport = self.transport
        sent = transport.sent_since(self._send_cnt_at_tick)
        # The heartbeat sent when nothing else was is not output the next tick may count (its
        # socket write is the next one): an idle connection gets one every half interval, as
        # from RabbitMQ.
        self._send_cnt_at_tick = transport.send_cnt + (not sent)
        self._act(self.session.heartbeat_tick(received, sent))
        if self.session.state is not _CLOSED:
            self._timer = self._loop.call_later(self._heartbeat_every, self._heartbeat_tick)

    # -- closing --------------------------------------------------------------------------

    def close_with_error(self, error: AMQPError) -> None:
        if self.session.state is not State.LINGERING:
            log.error("Error on AMQP connection %s (state: %s): %s (class %s method %s)",
                      self.display_name, self.session.state.value, error.reply_text,
                      error.class_id, error.method_id)
        self._act(self.session.fail(error))

    def close_forced(self, reason: str) -> None:
        """Server-initiated close (shutdown, management): 320 CONNECTION_FORCED."""
        self._act(self.session.close_forced(reason))

    def _release_everything(self, channels: Iterable[Channel]) -> None:
        """The connection is over for the broker: channels, exclusive queues, its place (called
        again when the socket ends, after a client's connection.close)."""
        for channel in channels:
            self._retire(channel)
            channel.release()
        for queue in list(self.exclusive_queues):
            queue.vhost.delete_queue(queue)
        self._retire_octets()
        self.node.connections.discard(self)

    def _retire_octets(self) -> None:
        """Its vhost keeps the socket's bytes (the API's vhost recv_oct and send_oct) once it
        is no longer among the node's connections: those so far, then the close's."""
        if self.vhost is None:
            return
        recv_oct, send_oct = self.transport.recv_oct, self.transport.send_oct
        retired_recv, retired_send = self._octets_retired
        closed = self.vhost.closed_traffic
        closed.recv_oct += recv_oct - retired_recv
        closed.send_oct += send_oct - retired_send
        self._octets_retired = (recv_oct, send_oct)

    def connection_lost(self) -> None:
        self.node.churn.connections_closed += 1
        unexpected = self.session.state is _OPEN
        channels = self.session.connection_lost()
        self._held.clear()
        self._cancel_timer()
        self._release_everything(channels)
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
        if not self.blocked or self._alarms or self.session.state is not _OPEN:
            return
        self.blocked = False
        self._received_since_tick = True  # the heartbeat monitor starts afresh
        if self._blocked_sent:
            self._blocked_sent = False
            self.send_method(0, spec.Connection.Unblocked())
        self._loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        """Handle the held frames (which may block us again), then read the socket again."""
        if self.session.state is _CLOSED or self.blocked:
            return
        held, self._held = self._held, []
        self._guarded(self._handle_frames, held)
        if not self.blocked and self.session.state is not _CLOSED:
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


# The session's actions -> what carries each out.
_ACTIONS: dict[type, Callable[[Connection, Any], None]] = {
    Send: Connection._send,
    Authenticate: Connection._authenticate,
    Tuned: Connection._tuned,
    OpenVhost: Connection._open_vhost,
    StartHeartbeats: Connection._start_heartbeats,
    CloseSocket: Connection._close_socket,
    Refuse: Connection._refuse,
    CloseChannels: Connection._close_channels,
    ClientClosed: Connection._client_closed,
    SecretUpdated: Connection._secret_updated,
    OpenChannel: Connection._open_channel,
    AwaitChannelContent: Connection._await_channel_content,
}
