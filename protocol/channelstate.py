"""The lifecycle of one channel, sans-I/O: the state it is in and the events that move it on,
as a table. The channel (broker/channel.py) does what a state means for the frames it gets:

    state     frames
    OPEN      handled
    CLOSING   dropped, except channel.close (answered with close-ok: closes that crossed),
              channel.close-ok (the channel is closed, its number free) and channel.open
              (504 CHANNEL_ERROR "second 'channel.open' seen")
    DEAD      checked as RabbitMQ's reader checks them (frame kind, content order), then
              dropped; a refusal the channel holds is raised once a content is complete

Transitions (`TRANSITIONS`; any other is a bug in the caller, raised as a RuntimeError):

    OPEN  --CLIENT_CLOSE-->  CLOSING   the client's channel.close (close-ok once its confirms
                                       are out)
    OPEN  --BROKER_CLOSE-->  CLOSING   a soft error: the broker's channel.close
    OPEN  --CRASH------->    DEAD      a message whose properties do not decode (541 for the
                                       connection once the frames already read are checked)

A channel whose first method is a content method rather than channel.open starts DEAD (RabbitMQ
assembles that content, then refuses it with 504 "expected 'channel.open'"). The channel is
closed (its number free again) by the connection, which drops it from its channel table."""

from __future__ import annotations

OPEN, CLOSING, DEAD = 0, 1, 2  # OPEN is 0: `if lifecycle.state:` is the hot path's "not open"
NAMES = {OPEN: "open", CLOSING: "closing", DEAD: "dead"}

CLIENT_CLOSE, BROKER_CLOSE, CRASH = "client close", "broker close", "crash"

TRANSITIONS = {
    (OPEN, CLIENT_CLOSE): CLOSING,
    (OPEN, BROKER_CLOSE): CLOSING,
    (OPEN, CRASH): DEAD,
}


class ChannelLifecycle:
    """The state of one channel."""

    __slots__ = ("state",)

    def __init__(self, state: int = OPEN) -> None:
        self.state = state

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    def on(self, event: str) -> int:
        """Move on with `event`; the new state."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise RuntimeError(
                f"channel lifecycle: no transition from {NAMES[self.state]} on {event}"
            ) from None
        return self.state
