"""protocol/channelstate.py: a channel's lifecycle table (no broker)."""

import pytest

from protocol.channelstate import (
    BROKER_CLOSE,
    CLIENT_CLOSE,
    CLOSING,
    CRASH,
    DEAD,
    OPEN,
    TRANSITIONS,
    ChannelLifecycle,
)


@pytest.mark.parametrize(("event", "after"), [
    (CLIENT_CLOSE, CLOSING), (BROKER_CLOSE, CLOSING), (CRASH, DEAD),
])
def test_an_open_channel_moves_on(event, after):
    lifecycle = ChannelLifecycle()
    assert lifecycle.is_open and lifecycle.state == OPEN
    assert not lifecycle.state  # the hot path tests `state` for falsity
    assert lifecycle.on(event) == after
    assert lifecycle.state == after
    assert not lifecycle.is_open


@pytest.mark.parametrize("state", [CLOSING, DEAD])
@pytest.mark.parametrize("event", [CLIENT_CLOSE, BROKER_CLOSE, CRASH])
def test_a_channel_not_open_has_no_transition(state, event):
    assert (state, event) not in TRANSITIONS
    lifecycle = ChannelLifecycle(state)
    with pytest.raises(RuntimeError, match="no transition"):
        lifecycle.on(event)
    assert lifecycle.state == state  # unchanged
