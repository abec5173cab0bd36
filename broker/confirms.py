"""Publisher confirms and transactions of a channel: confirms held until the log is durable,
then sent as runs of basic.ack (multiple) with basic.nack for refused messages; tx.select,
commit and rollback."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from pamqp import commands as spec

from broker.errors import PreconditionFailed
from protocol import codec

if TYPE_CHECKING:
    from collections.abc import Callable


class ConfirmsAndTransactions:
    """The confirm and tx methods of Channel, whose __init__ sets up the state they use."""

    def _wait_until_durable(self, seq: int, ticket: int) -> None:
        """Hold the confirm of publish `seq` (and the ones after it) until the log says `ticket`
        is on disk."""
        self._durable_waits.append((seq, ticket))
        if ticket != self._awaited_ticket:
            self._awaited_ticket = ticket
            self.vhost.store.wal.when_durable(ticket, self._log_durable)

    def _log_durable(self) -> None:
        if self.closing or self.connection.channels.get(self.number) is not self:
            return
        durable = self.vhost.store.wal.durable_ticket
        waits = self._durable_waits
        while waits and waits[0][1] <= durable:
            waits.popleft()
        self.flush_confirms()

    def when_confirmed(self, callback: Callable[[], None]) -> None:
        """Send the confirms of every publish so far, waiting for the disk where a persistent
        message needs it, then call back (at once when nothing waits): a channel's confirms
        all go out before its close-ok, never after."""
        self.flush_confirms()
        if not self._durable_waits:
            callback()
            return

        def durable() -> None:
            self._durable_waits.clear()
            self.flush_confirms()
            callback()

        self.vhost.store.wal.when_durable(self._durable_waits[-1][1], durable)

    def end_confirms(self) -> None:
        """The broker closes the channel for an error: what can be confirmed now is, ahead of
        channel.close; confirms still waiting for the disk are never sent (nothing may follow
        channel.close, and RabbitMQ sends none of them either)."""
        self.flush_confirms()
        self._durable_waits.clear()
        self._nacked.clear()
        self._confirmed_upto = self._publish_seq

    def flush_confirms(self) -> None:
        """Confirm every publish handled so far (up to the first one still waiting for the disk):
        one basic.ack (multiple) per run of accepted messages, a basic.nack for each refused one
        (with multiple set, as RabbitMQ does)."""
        upto, done = self._publish_seq, self._confirmed_upto
        if self._durable_waits:
            upto = self._durable_waits[0][0] - 1
        if upto <= done:
            return
        write, number = self.connection.write, self.number
        while self._nacked and self._nacked[0] <= upto:
            nacked = self._nacked.popleft()
            if nacked - 1 > done:
                write(codec.encode_ack(number, nacked - 1, nacked - 1 - done > 1))
            write(codec.encode_nack(number, nacked, True))
            done = nacked
        if upto > done:
            write(codec.encode_ack(number, upto, upto - done > 1))
        self.connection.node.messages_confirmed += upto - self._confirmed_upto
        self._confirmed_upto = upto

    def _on_confirm_select(self, method: spec.Confirm.Select) -> None:
        if self.tx_mode:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self.confirm_mode = True
        if not method.nowait:
            self.send_method(spec.Confirm.SelectOk())

    def _on_tx_select(self, method: spec.Tx.Select) -> None:
        if self.confirm_mode:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self.tx_mode = True
        self.send_method(spec.Tx.SelectOk())

    def _require_tx(self) -> None:
        if not self.tx_mode:
            raise PreconditionFailed("channel is not transactional")

    def _on_tx_commit(self, method: spec.Tx.Commit) -> None:
        self._require_tx()
        publishes, self._tx_publishes = self._tx_publishes, []
        settlements, self._tx_settlements = self._tx_settlements, []
        ticket = 0
        for exchange, message, mandatory in publishes:
            ticket = self.route(exchange, message, mandatory) or ticket
        for _, entry, acked, requeue in settlements:
            self._apply_settlement([entry], acked, requeue)
        if ticket:  # commit-ok promises the persistent messages are on disk
            self.vhost.store.wal.when_durable(ticket, self._send_commit_ok)
        else:
            self._send_commit_ok()

    def _send_commit_ok(self) -> None:
        self.send_if_open(spec.Tx.CommitOk())

    def _on_tx_rollback(self, method: spec.Tx.Rollback) -> None:
        self._require_tx()
        self._tx_publishes.clear()
        settlements, self._tx_settlements = self._tx_settlements, []
        restored = dict(self.unacked)
        for tag, entry, _, _ in settlements:
            restored[tag] = entry
        self.unacked = OrderedDict(sorted(restored.items()))
        self.send_method(spec.Tx.RollbackOk())
