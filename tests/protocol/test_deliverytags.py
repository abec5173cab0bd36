"""protocol/deliverytags.py: delivery tags and the outstanding deliveries (no broker)."""

import pytest

from protocol.deliverytags import DeliveryTags
from protocol.errors import AMQPChannelError

ACK, REJECT, NACK = 80, 90, 120


def tags_with(*deliveries: str) -> DeliveryTags[str]:
    tags: DeliveryTags[str] = DeliveryTags()
    for delivery in deliveries:
        tags.keep(delivery)
    return tags


def test_tags_count_from_one_with_or_without_ack():
    tags: DeliveryTags[str] = DeliveryTags()
    assert tags.keep("a") == 1
    assert tags.issue() == 2  # no-ack: a tag, nothing kept
    assert tags.keep("c") == 3
    assert list(tags.unacked) == [1, 3]
    assert len(tags) == 2


def test_single_ack_takes_that_tag_only():
    tags = tags_with("a", "b", "c")
    assert tags.take(2, False, ACK) == [(2, "b")]
    assert list(tags.unacked) == [1, 3]


def test_multiple_takes_every_tag_up_to_the_given_one():
    tags = tags_with("a", "b", "c", "d")
    tags.take(2, False, ACK)
    assert tags.take(3, True, ACK) == [(1, "a"), (3, "c")]
    assert list(tags.unacked) == [4]


def test_multiple_within_unbroken_tags_takes_exactly_the_prefix():
    # The tags outstanding are consecutive (counted, not walked): from the first one, after
    # the head was settled, and short of the last.
    tags = tags_with("a", "b", "c", "d", "e")
    assert tags.take(2, True, ACK) == [(1, "a"), (2, "b")]
    tags.take(3, False, ACK)
    assert tags.take(4, True, ACK) == [(4, "d")]
    assert list(tags.unacked) == [5]
    tags.issue()  # a no-ack delivery between: tag 6 is never outstanding
    tags.keep("g")
    assert tags.take(5, True, ACK) == [(5, "e")]
    assert list(tags.unacked) == [7]


def test_multiple_zero_takes_everything_even_nothing():
    tags = tags_with("a", "b")
    assert tags.take(0, True, NACK) == [(1, "a"), (2, "b")]
    assert tags.take(0, True, NACK) == []


@pytest.mark.parametrize(("tag", "multiple", "method_id"), [
    (5, False, ACK),  # never given
    (1, False, REJECT),  # already settled
    (1, True, NACK),  # multiple, but the tag itself is not outstanding
    (0, False, ACK),  # tag 0 without multiple
])
def test_unknown_tag_is_406_with_the_methods_ids(tag, multiple, method_id):
    tags = tags_with("a", "b")
    tags.take(1, False, ACK)
    with pytest.raises(AMQPChannelError) as raised:
        tags.take(tag, multiple, method_id)
    error = raised.value
    assert (error.reply_code, error.class_id, error.method_id) == (406, 60, method_id)
    assert error.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {tag}"
    assert list(tags.unacked) == [2]  # nothing taken


def test_take_all_and_restore_in_tag_order():
    tags = tags_with("a", "b", "c")
    taken = tags.take(1, False, ACK) + tags.take(3, False, ACK)
    tags.restore(taken)
    assert list(tags.unacked.items()) == [(1, "a"), (2, "b"), (3, "c")]
    assert tags.take_all() == ["a", "b", "c"]
    assert len(tags) == 0
    assert tags.keep("d") == 4  # tags are never reused
