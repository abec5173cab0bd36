"""The management API's view of quorum queues and streams, as RabbitMQ 3.10.8 shows them on one
node (RABBITMQ_QUEUE_TYPES.md §3, §6): `type`, and the replica fields `leader` (quorum only),
`members` and `online`, which on a single node all name that node. Shapes and keys are
compared, never node names. A quorum queue counts every message as persistent, transient or
not (it stores them all durably)."""

from __future__ import annotations

import pika
from management_api import q
from queue_types_helpers import WARREN_ONLY, api_queue, publish_each, stream_reader

QUORUM_KEYS = ("node", "leader", "members", "online", "messages_persistent",
               "message_bytes_persistent", "message_bytes", "messages_dlx", "message_bytes_dlx",
               "single_active_consumer_ctag", "state")
STREAM_KEYS = ("node", "members", "online", "messages_ready", "messages_unacknowledged")


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
