"""protocol/transactions.py: what a transactional channel holds until commit (no broker)."""

import pytest

from protocol.errors import AMQPChannelError
from protocol.transactions import HeldOutcome, TransactionBuffer


def test_commit_hands_back_what_was_held_in_order_and_stays_transactional():
    tx: TransactionBuffer[str, str] = TransactionBuffer()
    tx.active = True
    tx.hold_publish("m1")
    tx.hold_outcomes([(1, "d1"), (2, "d2")], True, False)
    tx.hold_publish("m2")
    tx.hold_outcomes([(3, "d3")], False, True)
    publishes, outcomes = tx.commit()
    assert publishes == ["m1", "m2"]
    assert outcomes == [HeldOutcome(1, "d1", True, False), HeldOutcome(2, "d2", True, False),
                        HeldOutcome(3, "d3", False, True)]
    assert tx.commit() == ([], [])
    assert tx.active


def test_rollback_drops_publishes_and_returns_deliveries_with_their_tags():
    tx: TransactionBuffer[str, str] = TransactionBuffer()
    tx.active = True
    tx.hold_publish("m1")
    tx.hold_outcomes([(4, "d4")], True, False)
    assert tx.rollback() == [(4, "d4")]
    assert tx.commit() == ([], [])


def test_clear_returns_the_held_deliveries():
    tx: TransactionBuffer[str, str] = TransactionBuffer()
    tx.active = True
    tx.hold_publish("m1")
    tx.hold_outcomes([(1, "d1"), (2, "d2")], False, False)
    assert tx.clear() == ["d1", "d2"]
    assert tx.commit() == ([], [])


@pytest.mark.parametrize(("operation", "method_id"), [("commit", 20), ("rollback", 30)])
def test_commit_or_rollback_without_select_is_406(operation, method_id):
    tx: TransactionBuffer[str, str] = TransactionBuffer()
    with pytest.raises(AMQPChannelError) as raised:
        getattr(tx, operation)()
    error = raised.value
    assert (error.reply_code, error.class_id, error.method_id) == (406, 90, method_id)
    assert error.reply_text == "PRECONDITION_FAILED - channel is not transactional"
