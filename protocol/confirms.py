"""Publisher-confirm bookkeeping of one channel, sans-I/O (no asyncio, no sockets): which
publishes are confirmed, which wait for the disk, which a queue refused. Events in
(`published`, `durable`), confirms out (`due`: basic.ack/basic.nack to send, as `Confirm`s).

Rules, as RabbitMQ applies them:
- publishes are numbered from 1 per channel once confirm.select is seen;
- a publish is confirmed once it and every one before it can be: at the end of the input that
  carried it, or, when it waits for a log ticket, once that ticket is durable;
- confirms go out as runs: one basic.ack (multiple when it covers more than one publish) per
  run of accepted publishes, and a basic.nack (multiple set, as RabbitMQ sends it) for each
  refused one;
- when the broker closes the channel for an error, what can be confirmed is (`due`, then
  `end`); the publishes still waiting for the disk are never confirmed."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class Confirm(NamedTuple):
    """A basic.ack (nack false) or basic.nack to send for publishes up to `delivery_tag`."""

    delivery_tag: int
    multiple: bool
    nack: bool = False


class ConfirmTracker:
    """The confirm state of a channel."""

    __slots__ = ("active", "published_seq", "confirmed_upto", "_nacked", "_waits",
                 "_awaited_ticket")

    def __init__(self) -> None:
        self.active = False  # confirm.select seen
        self.published_seq = 0  # the number of the last publish
        self.confirmed_upto = 0  # every publish up to this one has been confirmed
        self._nacked: deque[int] = deque()  # publish seqs to nack rather than ack
        self._waits: deque[tuple[int, int]] = deque()  # (publish seq, log ticket), in order
        self._awaited_ticket = 0

    def published(self, refused: bool, ticket: int = 0) -> bool:
        """A publish was handled: nacked if a queue `refused` it, confirmed once `ticket` is
        durable if not 0. True when the caller must ask to hear of `ticket` becoming durable
        (it is not the one already awaited) and then call `durable`."""
        self.published_seq = seq = self.published_seq + 1
        if refused:
            self._nacked.append(seq)
        if not ticket:
            return False
        self._waits.append((seq, ticket))
        if ticket == self._awaited_ticket:
            return False
        self._awaited_ticket = ticket
        return True

    def durable(self, durable_ticket: int) -> None:
        """The log is durable up to `durable_ticket`: publishes that waited for it may go."""
        waits = self._waits
        while waits and waits[0][1] <= durable_ticket:
            waits.popleft()

    @property
    def last_ticket(self) -> int:
        """The log ticket the last waiting publish waits for (0 when none waits)."""
        return self._waits[-1][1] if self._waits else 0

    def all_durable(self) -> None:
        """Every ticket waited for is durable (`last_ticket` was)."""
        self._waits.clear()

    def due(self) -> list[Confirm]:
        """The confirms to send now: every publish so far, up to the first one still waiting
        for the disk."""
        upto, done = self.published_seq, self.confirmed_upto
        if self._waits:
            upto = self._waits[0][0] - 1
        if upto <= done:
            return []
        confirms = []
        nacked = self._nacked
        while nacked and nacked[0] <= upto:
            seq = nacked.popleft()
            if seq - 1 > done:
                confirms.append(Confirm(seq - 1, seq - 1 - done > 1))
            confirms.append(Confirm(seq, True, nack=True))
            done = seq
        if upto > done:
            confirms.append(Confirm(upto, upto - done > 1))
        self.confirmed_upto = upto
        return confirms

    def end(self) -> None:
        """The channel is closed by the broker (after `due`): the publishes still waiting for
        the disk are dropped, never to be confirmed."""
        self._waits.clear()
        self._nacked.clear()
        self.confirmed_upto = self.published_seq
