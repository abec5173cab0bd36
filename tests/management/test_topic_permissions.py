"""/api/topic-permissions and topic permissions in definitions: shapes, statuses, RabbitMQ's
error bodies, refusals that change nothing, and a restart that keeps them.

Expectations were checked against RabbitMQ 3.10.8 (RABBITMQ_API.md, "Topic permissions"); run
against it with WARREN_TEST_AMQP_PORT=5682 WARREN_TEST_HTTP_PORT=15682. Every test creates its
own user and vhost and deletes them after. Where Warren refuses what RabbitMQ takes, the test
says so and checks Warren only.
"""

from __future__ import annotations

import os

import pytest
from brokers import run_warren
from management_api import NOT_FOUND, Api, q


@pytest.fixture
def names(api, unique):
    """A fresh (vhost, user); both deleted after the test."""
    suffix = str(abs(hash(unique)) % 10**9)
    vhost, user = f"tpv-{suffix}", f"tpu-{suffix}"
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    assert api.put(f"/api/users/{q(user)}", {"password": "pw", "tags": ""}).status == 201
    yield vhost, user
    api.delete(f"/api/vhosts/{q(vhost)}")
    api.delete(f"/api/users/{q(user)}")


def chars(text: str) -> list[int]:
    return [ord(char) for char in text]


def refused(reason: object) -> tuple[int, dict]:
    return 400, {"error": "bad_request", "reason": reason}


def answer_of(response) -> tuple[int, object]:
    return response.status, response.json() if response.body else None


def by_exchange(items: list[dict]) -> list[dict]:
    """RabbitMQ lists one user's topic permissions in a vhost in no particular order."""
    return sorted(items, key=lambda item: item["exchange"])


def warren_only(broker, why: str) -> None:
    if not broker.is_warren:
        pytest.skip(f"RabbitMQ 3.10 {why}")


# -- the endpoints ----------------------------------------------------------------------------


def test_put_get_list_and_delete(api, names):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    assert answer_of(api.get(path)) == (404, NOT_FOUND)
    assert api.put(path, {"exchange": "amq.topic", "write": "^a\\.", "read": "^b"}).status == 201
    # another exchange of the same user and vhost, then a change: both 204
    assert api.put(path, {"exchange": "logs", "write": "", "read": ""}).status == 204
    assert api.put(path, {"exchange": "amq.topic", "write": "^c", "read": "^b"}).status == 204
    expected = [
        {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^c", "read": "^b"},
        {"user": user, "vhost": vhost, "exchange": "logs", "write": "", "read": ""},
    ]
    assert by_exchange(api.ok_json(path)) == expected
    everything = api.ok_json("/api/topic-permissions")
    assert by_exchange([item for item in everything if item["user"] == user]) == expected
    assert by_exchange(api.ok_json(f"/api/users/{q(user)}/topic-permissions")) == expected
    assert by_exchange(api.ok_json(f"/api/vhosts/{q(vhost)}/topic-permissions")) == expected
    assert api.delete(path).status == 204
    assert answer_of(api.get(path)) == (404, NOT_FOUND)
    assert answer_of(api.delete(path)) == (404, NOT_FOUND)
    assert api.ok_json(f"/api/users/{q(user)}/topic-permissions") == []
    assert api.ok_json(f"/api/vhosts/{q(vhost)}/topic-permissions") == []


def test_delete_takes_every_exchange_of_the_user_in_the_vhost(api, names):
    """RabbitMQ's HTTP API has no per-exchange delete: an "exchange" in the body is ignored."""
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    for exchange in ("amq.topic", "logs"):
        assert api.put(path, {"exchange": exchange, "write": ".*", "read": ".*"}).status in (
            201, 204)
    assert api.request("DELETE", path, {"exchange": "logs"}).status == 204
    assert answer_of(api.get(path)) == (404, NOT_FOUND)
    assert answer_of(api.get(f"{path}/logs")) == (404, NOT_FOUND)


def test_columns_and_sort_apply_to_the_listing(api, names):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    for exchange in ("b-x", "a-x"):
        api.put(path, {"exchange": exchange, "write": "w", "read": "r"})
    listed = api.ok_json(f"/api/vhosts/{q(vhost)}/topic-permissions?sort=exchange"
                         "&columns=exchange,write")
    assert listed == [{"exchange": "a-x", "write": "w"}, {"exchange": "b-x", "write": "w"}]


def test_unknown_user_or_vhost(api, names):
    vhost, user = names
    body = {"exchange": "amq.topic", "write": ".*", "read": ".*"}
    for path_vhost, path_user in ((vhost, "no-such-user"), ("no-such-vhost", user)):
        path = f"/api/topic-permissions/{q(path_vhost)}/{q(path_user)}"
        assert answer_of(api.put(path, body)) == refused("vhost_or_user_not_found")
        # checked before the body, even a bad one
        assert answer_of(api.put(path, {})) == refused("vhost_or_user_not_found")
        assert answer_of(api.request("PUT", path, raw=b"xx")) == refused(
            "vhost_or_user_not_found")
        assert answer_of(api.get(path)) == (404, NOT_FOUND)
        assert answer_of(api.delete(path)) == (404, NOT_FOUND)
    assert answer_of(api.get("/api/users/no-such-user/topic-permissions")) == (404, NOT_FOUND)
    assert answer_of(api.get("/api/vhosts/no-such-vhost/topic-permissions")) == (404, NOT_FOUND)
    assert api.ok_json(f"/api/vhosts/{q(vhost)}/topic-permissions") == []


@pytest.mark.parametrize("body, reason", [
    ({}, "[{key_missing,exchange},{key_missing,write},{key_missing,read}]"),
    ({"write": ".*", "read": ".*"}, "[{key_missing,exchange}]"),
    ({"exchange": "x", "write": ".*"}, "[{key_missing,read}]"),
    ({"exchange": "x", "read": ".*"}, "[{key_missing,write}]"),
])
def test_missing_keys(api, names, body, reason):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    assert answer_of(api.put(path, body)) == refused(reason)
    assert answer_of(api.get(path)) == (404, NOT_FOUND)


def test_body_that_is_not_json(api, names):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    assert answer_of(api.request("PUT", path, raw=b"xx")) == refused("not_json")


# pattern -> (PCRE's message, offset in bytes), as RabbitMQ 3.10.8 reported them
INVALID = {
    "(": ("missing )", 1),
    "[a": ("missing terminating ] for character class", 2),
    "*": ("nothing to repeat", 0),
    "a{2,1}": ("numbers out of order in {} quantifier", 5),
    "ü(": ("missing )", 3),
}


@pytest.mark.parametrize("pattern", list(INVALID))
@pytest.mark.parametrize("field", ["write", "read"])
def test_invalid_regex_is_refused_and_changes_nothing(api, names, pattern, field):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    before = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "w", "read": "r"}
    assert api.put(path, {"exchange": "amq.topic", "write": "w", "read": "r"}).status == 201
    message, offset = INVALID[pattern]
    body = {"exchange": "amq.topic", "write": "w2", "read": "r2", field: pattern}
    # the pattern is a string here (/api/permissions shows it as a char list)
    assert answer_of(api.put(path, body)) == refused(
        ["invalid_regexp", pattern, [chars(message), offset]])
    assert answer_of(api.put(path, {**body, "exchange": "other"})) == refused(
        ["invalid_regexp", pattern, [chars(message), offset]])
    assert api.ok_json(path) == [before]


def test_write_is_checked_before_read(api, names):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    answer = api.put(path, {"exchange": "amq.topic", "write": "*", "read": "[a"})
    assert answer_of(answer) == refused(
        ["invalid_regexp", "*", [chars("nothing to repeat"), 0]])


def test_non_string_values(api, broker, names):
    warren_only(broker, "answers 500 (a crash) for non-string values")
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    assert answer_of(api.put(path, {"exchange": 5, "write": 1, "read": True})) == refused(
        "exchange, write and read must be strings")
    assert answer_of(api.get(path)) == (404, NOT_FOUND)


def test_deleting_the_user_or_vhost_forgets_them(api, unique):
    suffix = str(abs(hash(unique)) % 10**9)
    vhost, user = f"tpv-{suffix}", f"tpu-{suffix}"
    body = {"exchange": "amq.topic", "write": ".*", "read": ".*"}
    try:
        api.put(f"/api/vhosts/{q(vhost)}")
        api.put(f"/api/users/{q(user)}", {"password": "pw", "tags": ""})
        assert api.put(f"/api/topic-permissions/{q(vhost)}/{q(user)}", body).status == 201
        assert api.delete(f"/api/users/{q(user)}").status == 204
        api.put(f"/api/users/{q(user)}", {"password": "pw", "tags": ""})
        assert api.get(f"/api/topic-permissions/{q(vhost)}/{q(user)}").status == 404
        assert api.put(f"/api/topic-permissions/{q(vhost)}/{q(user)}", body).status == 201
        assert api.delete(f"/api/vhosts/{q(vhost)}").status == 204
        api.put(f"/api/vhosts/{q(vhost)}")
        assert api.get(f"/api/topic-permissions/{q(vhost)}/{q(user)}").status == 404
        assert [item for item in api.ok_json("/api/topic-permissions")
                if item["user"] == user] == []
    finally:
        api.delete(f"/api/vhosts/{q(vhost)}")
        api.delete(f"/api/users/{q(user)}")


# -- definitions ------------------------------------------------------------------------------


def test_export_and_import_round_trip(api, names):
    vhost, user = names
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    api.put(path, {"exchange": "amq.topic", "write": "^{username}\\.", "read": ""})
    entry = {"user": user, "vhost": vhost, "exchange": "amq.topic",
             "write": "^{username}\\.", "read": ""}
    exported = api.ok_json("/api/definitions")
    assert [item for item in exported["topic_permissions"] if item["user"] == user] == [entry]
    assert "topic_permissions" not in api.ok_json(f"/api/definitions/{q(vhost)}")
    assert api.delete(path).status == 204
    changed = {**entry, "exchange": "logs", "read": "^r"}
    document = {"topic_permissions": [entry, changed]}
    assert api.post("/api/definitions", document).status == 204
    assert by_exchange(api.ok_json(path)) == [entry, changed]


@pytest.mark.parametrize("field", ["write", "read"])
def test_import_with_an_invalid_regex_changes_nothing(api, broker, names, field):
    vhost, user = names
    queue = f"{user}-q"
    entry = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": ".*",
             "read": ".*", field: "[a"}
    document = {"queues": [{"name": queue, "vhost": vhost, "durable": True,
                            "auto_delete": False, "arguments": {}}],
                "topic_permissions": [entry]}
    answer = api.post("/api/definitions", document)
    assert answer_of(answer) == refused(
        ["invalid_regexp", "[a", [chars("missing terminating ] for character class"), 2]])
    assert api.get(f"/api/topic-permissions/{q(vhost)}/{q(user)}").status == 404
    # RabbitMQ imports topic permissions before queues, so the queue never comes either way
    assert api.get(f"/api/queues/{q(vhost)}/{q(queue)}").status == 404


def test_import_refusals(api, broker, names):
    vhost, user = names
    good = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": ".*", "read": ".*"}
    cases = [
        ({**good, "user": "no-such-user"}, refused(["no_such_user", "no-such-user"])),
        ({**good, "vhost": "no-such-vhost"}, refused(["no_such_vhost", "no-such-vhost"])),
    ]
    for entry, expected in cases:
        assert answer_of(api.post("/api/definitions", {"topic_permissions": [entry]})) == \
            expected
    assert api.get(f"/api/topic-permissions/{q(vhost)}/{q(user)}").status == 404


def test_import_with_a_missing_key_is_refused(api, broker, names):
    warren_only(broker, "imports an entry without exchange as exchange 'undefined' (204) and "
                "one without write or read as 400 badarg")
    vhost, user = names
    good = {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": ".*", "read": ".*"}
    for key in ("exchange", "write", "read"):
        entry = {name: value for name, value in good.items() if name != key}
        answer = api.post("/api/definitions", {"topic_permissions": [entry]})
        assert answer_of(answer) == refused(f"[{{key_missing,{key}}}]")
    assert api.get(f"/api/topic-permissions/{q(vhost)}/{q(user)}").status == 404


def test_topic_permissions_survive_a_restart(tmp_path):
    if os.environ.get("WARREN_TEST_AMQP_PORT"):
        pytest.skip("restarts a Warren of its own")
    entry = {"user": "guest", "vhost": "/", "exchange": "amq.topic", "write": "^w",
             "read": "^r"}
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.put("/api/topic-permissions/%2F/guest",
                       {"exchange": "amq.topic", "write": "^w", "read": "^r"}).status == 201
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.ok_json("/api/topic-permissions/%2F/guest") == [entry]
        assert api.ok_json("/api/definitions")["topic_permissions"] == [entry]
