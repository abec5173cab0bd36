"""protocol/confirms.py: publisher-confirm bookkeeping, events in, confirms out (no broker)."""

from protocol.confirms import Confirm, ConfirmTracker


def publish(tracker: ConfirmTracker, count: int, refused: bool = False, ticket: int = 0):
    return [tracker.published(refused, ticket) for _ in range(count)]


def test_accepted_publishes_are_confirmed_as_one_multiple_ack():
    tracker = ConfirmTracker()
    publish(tracker, 3)
    assert tracker.due() == [Confirm(3, True)]
    assert tracker.due() == []  # told once
    publish(tracker, 1)
    assert tracker.due() == [Confirm(4, False)]  # one publish: multiple not set


def test_refused_publish_is_nacked_between_runs_of_acks():
    tracker = ConfirmTracker()
    publish(tracker, 2)
    publish(tracker, 1, refused=True)
    publish(tracker, 1, refused=True)
    publish(tracker, 2)
    assert tracker.due() == [
        Confirm(2, True), Confirm(3, True, nack=True), Confirm(4, True, nack=True),
        Confirm(6, True),
    ]
    assert tracker.confirmed_upto == 6


def test_nothing_due_without_publishes():
    assert ConfirmTracker().due() == []


def test_publish_waiting_for_the_log_holds_the_ones_after_it():
    tracker = ConfirmTracker()
    publish(tracker, 1)
    assert publish(tracker, 1, ticket=7) == [True]  # the caller must await ticket 7
    assert publish(tracker, 1, ticket=7) == [False]  # already awaited
    publish(tracker, 1)
    assert tracker.due() == [Confirm(1, False)]
    tracker.durable(6)
    assert tracker.due() == []
    tracker.durable(7)
    assert tracker.due() == [Confirm(4, True)]


def test_a_new_ticket_is_awaited_again():
    tracker = ConfirmTracker()
    assert publish(tracker, 1, ticket=1) == [True]
    assert publish(tracker, 1, ticket=2) == [True]
    assert tracker.last_ticket == 2
    tracker.durable(1)
    assert tracker.due() == [Confirm(1, False)]
    tracker.all_durable()
    assert tracker.last_ticket == 0
    assert tracker.due() == [Confirm(2, False)]


def test_end_drops_what_waits_for_the_disk():
    tracker = ConfirmTracker()
    publish(tracker, 2)
    publish(tracker, 1, ticket=3)
    publish(tracker, 1, refused=True)
    assert tracker.due() == [Confirm(2, True)]
    tracker.end()
    assert tracker.due() == []
    publish(tracker, 1)  # (nothing is published after the end; the numbering carries on)
    assert tracker.due() == [Confirm(5, False)]
