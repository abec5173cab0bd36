"""The management API's view of quorum queues and streams, as RabbitMQ 3.10.8 shows them on one
node (RABBITMQ_QUEUE_TYPES.md §3, §6): `type`, and the replica fields `leader` (quorum only),
`members` and `online`, which on a single node all name that node. Shapes and keys are
compared, never node names. A quorum queue counts every message as persistent, transient or
not (it stores them all durably)."""

from __future__ import annotations

import pika
from client_helpers import opened
from management_api import Api, q
from queue_types_helpers import REFERENCE, WARREN_ONLY, api_queue, publish_each, stream_reader

QUORUM_KEYS = ("node", "leader", "members", "online", "messages_persistent",
               "message_bytes_persistent", "message_bytes", "messages_dlx", "message_bytes_dlx",
               "single_active_consumer_ctag", "state")
STREAM_KEYS = ("node", "members", "online", "messages_ready", "messages_unacknowledged")

# RabbitMQ 3.10.8's keys, with ready and unacked messages and a consumer (RABBITMQ_QUEUE_TYPES.md
# §3, §6), and those of them Warren shows for no queue type: per-channel and rate details
# (deliveries, incoming, *_details), the Erlang process's (garbage_collection, reductions), and
# consumer_capacity, which Warren does not measure (its consumer_utilisation is null).
NOT_IN_WARREN = {"deliveries", "incoming", "garbage_collection", "reductions",
                 "reductions_details", "messages_details", "messages_ready_details",
                 "messages_unacknowledged_details", "consumer_capacity"}
_RATES_AND_PROCESS = NOT_IN_WARREN - {"consumer_capacity"}
RABBITMQ_QUORUM_KEYS = _RATES_AND_PROCESS | {
    "arguments", "auto_delete", "consumer_capacity", "consumer_details", "consumer_utilisation",
    "consumers", "durable", "effective_policy_definition", "exclusive", "leader", "members",
    "memory", "message_bytes", "message_bytes_dlx", "message_bytes_persistent",
    "message_bytes_ram", "message_bytes_ready", "message_bytes_unacknowledged", "message_stats",
    "messages", "messages_dlx", "messages_persistent", "messages_ram", "messages_ready",
    "messages_unacknowledged", "name", "node", "online", "open_files", "operator_policy", "policy",
    "single_active_consumer_ctag", "state", "type", "vhost",
}
RABBITMQ_STREAM_KEYS = _RATES_AND_PROCESS | {
    "arguments", "auto_delete", "consumer_details", "consumers", "durable",
    "effective_policy_definition", "exclusive", "members", "memory", "message_stats", "messages",
    "messages_ready", "messages_unacknowledged", "name", "node", "online", "operator_policy",
    "policy", "readers", "state", "type", "vhost",
}


def test_a_quorum_queue_in_the_api(api, channel, queues):
    queue = queues.quorum(channel, delivery_limit=2)
    channel.basic_publish("", queue, b"transient")
    channel.basic_publish("", queue, b"persistent", pika.BasicProperties(delivery_mode=2))
    answer = api_queue(api, queue, lambda a: a.get("messages") == 2
                       and a.get("messages_persistent") == 2, QUORUM_KEYS)
    assert answer["type"] == "quorum"
    assert (answer["name"], answer["vhost"], answer["durable"], answer["auto_delete"],
            answer["exclusive"]) == (queue, "/", True, False, False)
    assert answer["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": 2}
    node = answer["node"]
    assert isinstance(node, str) and node
    assert answer["leader"] == node
    assert answer["members"] == [node]
    assert answer["online"] == [node]
    assert (answer["messages"], answer["messages_ready"], answer["messages_unacknowledged"]) == (
        2, 2, 0)
    # every message is stored durably, the transient one too
    assert answer["messages_persistent"] == 2
    assert answer["message_bytes_persistent"] == answer["message_bytes"] == 19
    assert (answer["messages_dlx"], answer["message_bytes_dlx"]) == (0, 0)
    assert answer["single_active_consumer_ctag"] is None
    assert answer["state"] == "running"
    # a classic queue's fields it does not have
    for key in ("exclusive_consumer_tag", "single_active_consumer_tag", "head_message_timestamp"):
        assert key not in answer, key


def test_a_quorum_queue_in_the_queue_list(api, channel, queues):
    queue = queues.quorum(channel)
    listed = {entry["name"]: entry for entry in api.ok_json("/api/queues/%2F")}
    entry = listed[queue]
    assert entry["type"] == "quorum"
    # at once, before any statistics: the replica fields name the (only) node
    assert entry["members"] == [entry["leader"]] == entry["online"]


def test_a_stream_in_the_api(api, channel, queues):
    stream = queues.stream(channel, max_age="1D")
    publish_each(channel, stream, [b"a", b"b", b"c"])
    answer = api_queue(api, stream, lambda a: a.get("messages") == 3, STREAM_KEYS)
    assert answer["type"] == "stream"
    assert (answer["name"], answer["durable"], answer["auto_delete"], answer["exclusive"]) == (
        stream, True, False, False)
    assert answer["arguments"] == {"x-queue-type": "stream", "x-max-age": "1D"}
    node = answer["node"]
    assert answer["members"] == [node]
    assert answer["online"] == [node]
    assert "leader" not in answer
    assert (answer["messages"], answer["messages_ready"], answer["messages_unacknowledged"]) == (
        3, 3, 0)


def test_a_stream_keeps_its_message_count_while_read(api, broker, channel, queues):
    """Reading (unacked here) removes nothing and leaves nothing 'unacknowledged'; the API
    names the reader's node in `readers`."""
    stream = queues.stream(channel)
    publish_each(channel, stream, [b"a", b"b", b"c"])
    with stream_reader(broker, stream, "first", ack=False) as reader:
        reader.wait(3)
        answer = api_queue(api, stream, lambda a: a.get("consumers") == 1
                           and a.get("messages") == 3, ("readers", "node"))
        assert answer["consumers"] == 1
        assert (answer["messages"], answer["messages_unacknowledged"]) == (3, 0)
        assert answer["readers"] == {answer["node"]: 1}
    assert api.get(f"/api/queues/%2F/{q(stream)}").status == 200


def test_a_conditional_api_delete_of_a_quorum_queue_is_refused(api, channel, queues):
    """RabbitMQ 3.10.8: 400 with the 540's text, for either flag; the queue is kept."""
    queue = queues.quorum(channel)
    for flag in ("if-unused", "if-empty"):
        answer = api.delete(f"/api/queues/%2F/{q(queue)}?{flag}=true")
        assert (answer.status, answer.json()) == (400, {
            "error": "bad_request",
            "reason": f"cannot delete queue '{queue}' in vhost '/'. queue.delete operations "
                      f"with {flag} flag set are not supported by quorum queues"})
    assert api.get(f"/api/queues/%2F/{q(queue)}").status == 200


def test_single_active_consumer_in_the_api(api, connection, channel, queues):
    """single_active_consumer_ctag names the active consumer (RabbitMQ fills it a few seconds
    after consumer_details); consumer_details say which consumer is active, which waits."""
    queue = queues.quorum(channel, single_active_consumer=True)
    connection.channel().basic_consume(queue, lambda *_: None, consumer_tag="first-ctag")
    connection.channel().basic_consume(queue, lambda *_: None, consumer_tag="second-ctag")
    answer = api_queue(api, queue, lambda a: len(a.get("consumer_details", [])) == 2
                       and a.get("single_active_consumer_ctag") is not None)
    details = sorted((d["consumer_tag"], d["active"], d["activity_status"])
                     for d in answer["consumer_details"])
    assert details == [("first-ctag", True, "single_active"), ("second-ctag", False, "waiting")]
    assert answer["single_active_consumer_ctag"] == "first-ctag"


def test_definitions_export_and_import_keep_a_quorum_queue(api, channel, queues):
    """Exported with its x-queue-type; imported under another name, it is a quorum queue."""
    queue = queues.quorum(channel, delivery_limit=3)
    exported = api.ok_json("/api/definitions")
    (entry,) = [item for item in exported["queues"] if item["name"] == queue]
    assert entry["durable"] is True
    assert entry["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": 3}
    copy = queues.name("copy")
    status = api.post("/api/definitions", {"queues": [{**entry, "name": copy}]}).status
    assert status in (200, 201, 204)
    answer = api_queue(api, copy, lambda a: a.get("type") == "quorum", ("type",))
    assert (answer["type"], answer["arguments"]) == (
        "quorum", {"x-queue-type": "quorum", "x-delivery-limit": 3})


@WARREN_ONLY
def test_warren_shows_a_streams_size_on_disk(api, channel, queues):
    """Not in RabbitMQ 3.10.8's queue object: Warren's `stream_disk_bytes`, the bytes of the
    stream's segment files (issue 13 asks for the size on disk)."""
    stream = queues.stream(channel)
    publish_each(channel, stream, [b"x" * 1000] * 3)
    answer = api_queue(api, stream, lambda a: a.get("messages") == 3, ("stream_disk_bytes",))
    assert 3000 < answer["stream_disk_bytes"] < 4000


def _holding_unacked(connection, channel, queue: str, bodies: list[bytes], unacked: int,
                     **consume: object) -> list:
    """Publish `bodies`, then leave the first `unacked` delivered and unacknowledged."""
    publish_each(channel, queue, bodies)
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=unacked)
    received: list = []
    consuming.basic_consume(queue, lambda ch, m, p, b: received.append(b), **consume)
    deadline = 50
    while len(received) < unacked and deadline:
        connection.process_data_events(time_limit=0.1)
        deadline -= 1
    return received


def test_a_quorum_queue_counts_its_unacked_bytes(api, connection, channel, queues):
    """message_bytes is ready + unacked (RabbitMQ 3.10.8: 500 for 3 ready and 2 unacked of
    100 B), with message_bytes_unacknowledged, open_files and operator_policy as RabbitMQ has
    them; the key set is RabbitMQ's, but for what Warren shows for no queue type."""
    queue = queues.quorum(channel)
    received = _holding_unacked(connection, channel, queue, [b"a" * 10, b"b" * 20, b"c" * 40],
                                unacked=2)
    assert received == [b"a" * 10, b"b" * 20]
    answer = api_queue(api, queue, lambda a: a.get("messages_unacknowledged") == 2
                       and a.get("message_bytes_unacknowledged") == 30,
                       tuple(RABBITMQ_QUORUM_KEYS - NOT_IN_WARREN))
    assert (answer["messages"], answer["messages_ready"], answer["messages_unacknowledged"]) == (
        3, 1, 2)
    assert (answer["message_bytes"], answer["message_bytes_ready"],
            answer["message_bytes_unacknowledged"], answer["message_bytes_persistent"]) == (
        70, 40, 30, 70)
    assert answer["open_files"] == {answer["node"]: 0}
    assert answer["operator_policy"] is None
    missing = RABBITMQ_QUORUM_KEYS - NOT_IN_WARREN - set(answer)
    assert not missing, missing
    if not REFERENCE:
        assert set(answer) - RABBITMQ_QUORUM_KEYS == set()
        # Warren holds all three bodies in memory (RabbitMQ 3.10 keeps none: 0 and 0)
        assert (answer["messages_ram"], answer["message_bytes_ram"]) == (3, 70)
    else:
        assert (answer["messages_ram"], answer["message_bytes_ram"]) == (0, 0)
    connection.process_data_events(time_limit=0.1)


def test_a_stream_shows_rabbitmqs_keys(api, connection, channel, queues):
    """A stream's object has RabbitMQ's keys, none of the classic queue's it lacks
    (message_bytes, exclusive_consumer_tag ...), and Warren's stream_disk_bytes."""
    stream = queues.stream(channel)
    _holding_unacked(connection, channel, stream, [b"a" * 10, b"b" * 20, b"c" * 40],
                     unacked=2, arguments={"x-stream-offset": "first"})
    answer = api_queue(api, stream, lambda a: a.get("consumers") == 1
                       and a.get("messages") == 3, tuple(RABBITMQ_STREAM_KEYS - NOT_IN_WARREN))
    assert answer["operator_policy"] is None
    missing = RABBITMQ_STREAM_KEYS - NOT_IN_WARREN - set(answer)
    assert not missing, missing
    extra = set(answer) - RABBITMQ_STREAM_KEYS
    assert extra == (set() if REFERENCE else {"stream_disk_bytes"})
    connection.process_data_events(time_limit=0.1)


@WARREN_ONLY
def test_a_long_quorum_queue_holds_only_its_resident_head_in_memory(warren_factory):
    """Behind the resident head (--resident-head) a quorum queue's messages are rows of the
    catalog, not bodies in memory: messages_ram and message_bytes_ram count only the head
    (and the unacked deliveries)."""
    broker = warren_factory(extra_args=["--resident-head", "4"])
    api = Api(broker.host, broker.management_port)
    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("long", durable=True, arguments={"x-queue-type": "quorum"})
        publish_each(channel, "long", [b"x" * 10] * 20)
        answer = api.ok_json("/api/queues/%2F/long")
        assert (answer["messages"], answer["message_bytes"]) == (20, 200)
        assert (answer["messages_ram"], answer["message_bytes_ram"]) == (4, 40)
        method, _, body = channel.basic_get("long")
        assert body == b"x" * 10
        answer = api.ok_json("/api/queues/%2F/long")
        assert (answer["messages_unacknowledged"], answer["message_bytes_unacknowledged"]) == (
            1, 10)
        assert answer["messages_ram"] == answer["message_bytes_ram"] // 10
        assert 1 <= answer["messages_ram"] <= 5  # the unacked one and what is resident now


IN_MEMORY_CASES = {"none": {}, "len2": {"max_in_memory_length": 2},
                   "bytes25": {"max_in_memory_bytes": 25}, "len0": {"max_in_memory_length": 0}}


@WARREN_ONLY
def test_the_in_memory_limits_of_a_quorum_queue(api, channel, queues):
    """x-max-in-memory-length / -bytes: messages arriving behind that many ready messages (or
    bytes) are kept on disk (rows of the message store's catalog), and messages_ram /
    message_bytes_ram count the ready messages whose bodies are in memory. (RabbitMQ 3.10.8
    accepts both and ignores them: its quorum queues keep no body in memory and show
    messages_ram 0 in every one of these cases; Warren keeps the head of a queue in memory.)
    Consuming gets every message back, in order."""
    bodies = [b"m%d-5678901" % index for index in range(5)]  # 10 bytes each
    names = {}
    for case, arguments in IN_MEMORY_CASES.items():
        names[case] = queues.quorum(channel, case, **arguments)
        publish_each(channel, names[case], bodies)
    ram = {}
    for case, name in names.items():
        answer = api_queue(api, name, lambda a: a.get("messages") == 5)
        ram[case] = (answer["messages_ram"], answer["message_bytes_ram"])
    assert ram == {"none": (5, 50), "len2": (2, 20), "bytes25": (2, 20), "len0": (0, 0)}
    for name in names.values():
        assert [channel.basic_get(name, auto_ack=True)[2] for _ in range(6)] == [*bodies, None]


@WARREN_ONLY
def test_policies_set_the_in_memory_limits_of_a_quorum_queue(api, channel, queues):
    """max-in-memory-length / -bytes in a policy or an operator policy (which RabbitMQ 3.10.8
    accepts, tests/management/RABBITMQ_OPERATOR_POLICIES.md) limit a quorum queue as its
    arguments do, the lower of the two where both are set; the queue shows them in its
    effective_policy_definition."""
    by_policy, by_operator = queues.quorum(channel, "pol"), queues.quorum(channel, "op")
    policy = f"/api/policies/%2F/{q(by_policy)}"
    operator = f"/api/operator-policies/%2F/{q(by_operator)}"
    try:
        assert api.put(policy, {"pattern": f"^{by_policy}$", "apply-to": "queues",
                                "definition": {"max-in-memory-length": 2}}).status == 201
        assert api.put(operator, {"pattern": f"^{by_operator}$",
                                  "definition": {"max-in-memory-bytes": 25}}).status == 201
        api_queue(api, by_policy, lambda answer: answer.get("effective_policy_definition")
                  == {"max-in-memory-length": 2})
        api_queue(api, by_operator, lambda answer: answer.get("effective_policy_definition")
                  == {"max-in-memory-bytes": 25})
        bodies = [b"m%d-5678901" % index for index in range(5)]  # 10 bytes each
        for name in (by_policy, by_operator):
            publish_each(channel, name, bodies)
            answer = api_queue(api, name, lambda a: a.get("messages") == 5)
            assert (answer["messages_ram"], answer["message_bytes_ram"]) == (2, 20)
            assert [channel.basic_get(name, auto_ack=True)[2] for _ in range(6)] == [
                *bodies, None]
    finally:
        api.delete(policy)
        api.delete(operator)
