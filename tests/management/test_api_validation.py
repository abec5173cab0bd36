"""What the management API refuses, and that a refusal changes nothing: names over 255 bytes,
request bodies over RabbitMQ's limit, regular expressions that do not compile, and definitions
imports with a bad entry (all of the document or none of it); a large import in seconds.

Expectations were checked against RabbitMQ 3.10.8 (RABBITMQ_API.md, "Validation"); run against
it with WARREN_TEST_AMQP_PORT=5682 WARREN_TEST_HTTP_PORT=15682. Where RabbitMQ accepts what
Warren refuses, or applies an import in part, the test says so and checks Warren only.
"""

from __future__ import annotations

import json
import time

import pytest
from management_api import NOT_FOUND, q

BODY_LIMIT = 8_000_000  # bytes: RabbitMQ 3.10 reads a body in one 8,000,000-byte chunk
TOO_LARGE = {"error": "bad_request", "reason": "Exceeded HTTP request body size limit"}


def chars(text: str) -> list[int]:
    """An Erlang char list as RabbitMQ's JSON shows it."""
    return [ord(char) for char in text]


def warren_only(broker, why: str) -> None:
    if not broker.is_warren:
        pytest.skip(f"RabbitMQ 3.10 {why}")


# -- names ------------------------------------------------------------------------------------


def test_queue_name_over_255_bytes(api, unique):
    name = "ü" * 128  # 256 bytes
    answer = api.put(f"/api/queues/%2F/{q(name)}", {})
    assert (answer.status, answer.json()) == (400, {
        "error": "bad_request",
        "reason": "queue should be less than 255 bytes, actually was 256\n"})
    assert api.get(f"/api/queues/%2F/{q(name)}").status == 404
    fits = "ü" * 127 + "a"  # 255 bytes
    try:
        assert api.put(f"/api/queues/%2F/{q(fits)}", {}).status == 201
    finally:
        api.delete(f"/api/queues/%2F/{q(fits)}")


@pytest.mark.parametrize("kind, path", [
    ("exchange", "/api/exchanges/%2F/{}"), ("vhost", "/api/vhosts/{}"),
    ("user", "/api/users/{}"),
])
def test_other_names_over_255_bytes(api, broker, kind, path):
    warren_only(broker, "takes them over HTTP (201), though AMQP cannot name them")
    name = "n" * 300
    answer = api.put(path.format(name), {"tags": "", "password": "x"})
    assert (answer.status, answer.json()) == (400, {
        "error": "bad_request",
        "reason": f"{kind} should be less than 255 bytes, actually was 300\n"})
    assert api.get(path.format(name)).status == 404


# -- request bodies ---------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A definitions document of exactly `size` bytes that imports nothing."""
    head, tail = b'{"queues":[],"pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_body_size_limit(api):
    assert api.request("POST", "/api/definitions", raw=padded(BODY_LIMIT)).status == 204
    answer = api.request("POST", "/api/definitions", raw=padded(BODY_LIMIT + 100_000))
    assert (answer.status, answer.json()) == (400, TOO_LARGE)


def test_twenty_thousand_queues_import_in_seconds(api, broker, unique):
    """A ~2 MB document (20,000 queues, bound to one exchange) imports as one request; the
    time is printed, not asserted (speed belongs to benchmarks)."""
    warren_only(broker, "takes 104 s to import it and 60 s to delete the vhost (measured)")
    vhost = f"bulk-{unique}"
    queues = [{"name": f"q{i}", "vhost": vhost, "durable": True, "auto_delete": False,
               "arguments": {}} for i in range(20_000)]
    document = {
        "vhosts": [{"name": vhost}], "queues": queues,
        "exchanges": [{"name": "fan", "vhost": vhost, "type": "fanout", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": "fan", "vhost": vhost, "destination": f"q{i}",
                      "destination_type": "queue", "routing_key": "", "arguments": {}}
                     for i in range(0, 20_000, 10)],
    }
    raw = json.dumps(document).encode()
    assert 2_000_000 < len(raw) < BODY_LIMIT
    try:
        started = time.monotonic()
        answer = api.request("POST", "/api/definitions", raw=raw)
        print(f"20,000 queues ({len(raw)} bytes) imported in {time.monotonic() - started:.2f}s")
        assert answer.status == 204, answer
        listed = api.ok_json(f"/api/queues/{q(vhost)}?page=1&page_size=1&columns=name")
        assert listed["total_count"] == 20_000
        assert len(api.ok_json(f"/api/exchanges/{q(vhost)}/fan/bindings/source")) == 2_000
    finally:
        api.delete(f"/api/vhosts/{q(vhost)}")


# -- regular expressions ----------------------------------------------------------------------


@pytest.mark.parametrize("field, pattern, reason", [
    ("configure", "(", ["invalid_regexp", chars("("), [chars("missing )"), 1]]),
    ("write", "[a", ["invalid_regexp", chars("[a"),
                     [chars("missing terminating ] for character class"), 2]]),
])
def test_permission_with_an_invalid_regex(api, unique, field, pattern, reason):
    vhost = f"re-{unique}"
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    try:
        body = {"configure": ".*", "write": ".*", "read": ".*", field: pattern}
        answer = api.put(f"/api/permissions/{q(vhost)}/guest", body)
        assert (answer.status, answer.json()) == (400, {"error": "bad_request", "reason": reason})
        assert api.ok_json(f"/api/permissions/{q(vhost)}/guest")[field] == ".*"
    finally:
        api.delete(f"/api/vhosts/{q(vhost)}")


@pytest.mark.parametrize("pattern, term", [
    ("(", '{"missing )",1}'),
    ("*", '{"nothing to repeat",0}'),
    ("a{2,1}", '{"numbers out of order in {} quantifier",\n' + " " * 54 + "5}"),
    (")", '{"unmatched parentheses",\n' + " " * 54 + "0}"),
    ("abc(def", '{"missing )",7}'),
])
def test_policy_with_an_invalid_pattern(api, unique, pattern, term):
    path = f"/api/policies/%2F/re-{abs(hash(unique)) % 10**8}"
    answer = api.put(path, {"pattern": pattern, "definition": {"max-length": 1}})
    assert (answer.status, answer.json()) == (400, {"error": "bad_request", "reason": (
        f"Validation failed\n\npattern should be regular expression but is invalid: {term}\n")})
    assert api.get(path).status == 404


# -- definitions import: all or nothing -------------------------------------------------------


def good_parts(prefix: str) -> dict[str, list]:
    """A new vhost, user, queue, exchange, binding and policy, all valid."""
    return {
        "vhosts": [{"name": f"{prefix}vh"}],
        "users": [{"name": f"{prefix}user", "password_hash": "",
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
        "permissions": [],
        "policies": [{"vhost": "/", "name": f"{prefix}pol", "pattern": f"^{prefix}zz",
                      "apply-to": "queues", "definition": {"max-length": 3}, "priority": 0}],
        "queues": [{"name": f"{prefix}q", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {}}],
        "exchanges": [{"name": f"{prefix}x", "vhost": "/", "type": "fanout", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": f"{prefix}x", "vhost": "/", "destination": f"{prefix}q",
                      "destination_type": "queue", "routing_key": "", "arguments": {}}],
    }


def good_paths(prefix: str) -> list[str]:
    return [f"/api/queues/%2F/{q(prefix)}q", f"/api/exchanges/%2F/{q(prefix)}x",
            f"/api/users/{q(prefix)}user", f"/api/vhosts/{q(prefix)}vh",
            f"/api/policies/%2F/{q(prefix)}pol"]


def bad_entries(p: str) -> dict[str, tuple[dict, tuple[int, object], bool]]:
    """case -> (entries added to the good ones, Warren's answer, whether RabbitMQ refuses
    the document with that same answer)."""
    queue = {"vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}
    policy = {"vhost": "/", "name": f"{p}bad", "pattern": "^x", "apply-to": "all",
              "priority": 0, "definition": {"max-length": 1}}
    where = f" (//{p}bad)"

    def refused(reason: object) -> tuple[int, object]:
        return 400, {"error": "bad_request", "reason": reason}

    return {
        "policy unknown key": (
            {"policies": [{**policy, "definition": {"bogus-key": 1}}]},
            refused('Validation failed\n\n[{&lt;&lt;"bogus-key"&gt;&gt;,1}] are not '
                    f"recognised policy settings\n{where}"), True),
        "policy bad value": (
            {"policies": [{**policy, "definition": {"max-length": "x"}}]},
            refused('Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid maximum length\n'
                    + where), True),
        "policy bad pattern": (
            {"policies": [{**policy, "pattern": "("}]},
            refused('Validation failed\n\npattern should be regular expression but is '
                    'invalid: {"missing )",1}\n' + where), True),
        "queue bad argument": (
            {"queues": [{**queue, "name": f"{p}q2", "arguments": {"x-max-length": "ten"}}]},
            refused(["amqp_error", "precondition_failed", chars(
                f"invalid arg 'x-max-length' for queue '{p}q2' in vhost '/': "
                '"expected integer, got longstr"'), "none"]), True),
        "exchange bad type": (
            # a type name never seen before: RabbitMQ says "invalid" for an existing atom
            {"exchanges": [{"name": f"{p}x2", "vhost": "/", "type": f"{p}bogus",
                            "durable": True, "auto_delete": False, "internal": False,
                            "arguments": {}}]},
            refused(["amqp_error", "command_invalid",
                     chars(f"unknown exchange type '{p}bogus'"), "none"]), True),
        "permission bad regex": (
            {"permissions": [{"user": "guest", "vhost": f"{p}vh", "configure": "(",
                              "write": ".*", "read": ".*"}]},
            refused(["invalid_regexp", chars("("), [chars("missing )"), 1]]), True),
        "permission unknown user": (
            {"permissions": [{"user": f"{p}nobody", "vhost": "/", "configure": ".*",
                              "write": ".*", "read": ".*"}]},
            refused(["no_such_user", f"{p}nobody"]), True),
        "topic permission bad regex": (
            {"topic_permissions": [{"user": "guest", "vhost": f"{p}vh", "exchange": "amq.topic",
                                    "write": "(", "read": ".*"}]},
            refused(["invalid_regexp", "(", [chars("missing )"), 1]]), True),
        "topic permission unknown user": (
            {"topic_permissions": [{"user": f"{p}nobody", "vhost": "/", "exchange": "amq.topic",
                                    "write": ".*", "read": ".*"}]},
            refused(["no_such_user", f"{p}nobody"]), True),
        # RabbitMQ takes these (204), in part silently ignored:
        "binding to a missing queue": (
            {"bindings": [{"source": f"{p}x", "vhost": "/", "destination": f"{p}nosuch",
                           "destination_type": "queue", "routing_key": "", "arguments": {}}]},
            (404, {"error": "not_found", "reason": f"no queue '{p}nosuch' in vhost '/'"}), False),
        "binding from a missing exchange": (
            {"bindings": [{"source": f"{p}nosuch", "vhost": "/", "destination": f"{p}q",
                           "destination_type": "queue", "routing_key": "", "arguments": {}}]},
            (404, {"error": "not_found", "reason": f"no exchange '{p}nosuch' in vhost '/'"}),
            False),
        "queue name over 255 bytes": (
            {"queues": [{**queue, "name": "a" * 256}]},
            refused("queue should be less than 255 bytes, actually was 256\n"), False),
        "queue inequivalent to the one before": (
            {"queues": [{**queue, "name": f"{p}q", "durable": False}]},
            refused(["amqp_error", "precondition_failed", chars(
                f"inequivalent arg 'durable' for queue '{p}q' in vhost '/': received 'false' "
                "but current is 'true'"), "none"]), False),
        "queue named amq.*": (
            {"queues": [{**queue, "name": "amq.import"}]},
            (401, {"error": "not_authorised", "reason": "Access refused."}), False),
        "headers binding with a bad x-match": (
            {"bindings": [{"source": "amq.headers", "vhost": "/", "destination": f"{p}q",
                           "destination_type": "queue", "routing_key": "",
                           "arguments": {"x-match": "bogus"}}]},
            refused(["amqp_error", "precondition_failed", chars(
                "Invalid x-match field value <<\"bogus\">>; expected all, any, all-with-x, or "
                "any-with-x"), "none"]), False),
    }


CASES = list(bad_entries("p-"))


@pytest.mark.parametrize("case", CASES)
def test_import_with_a_bad_entry_changes_nothing(api, broker, unique, case):
    prefix = f"imp{abs(hash(unique)) % 10**8}-"
    extra, expected, rabbitmq_refuses = bad_entries(prefix)[case]
    document = good_parts(prefix)
    for key, entries in extra.items():
        document[key] = document.get(key, []) + entries
    if not (broker.is_warren or rabbitmq_refuses):
        pytest.skip("RabbitMQ 3.10 imports this document (204)")
    try:
        answer = api.post("/api/definitions", document)
        assert (answer.status, answer.json()) == expected
        if broker.is_warren:  # RabbitMQ keeps what it applied before the bad entry
            for path in good_paths(prefix):
                assert (api.get(path).status, api.get(path).json()) == (404, NOT_FOUND), path
            assert api.ok_json("/api/permissions/%2F/guest")["configure"] == ".*"
    finally:
        for path in good_paths(prefix):
            api.delete(path)


def test_import_of_good_parts_applies_them(api, unique):
    """The control of the test above: without the bad entry the same document imports."""
    prefix = f"imp{abs(hash(unique)) % 10**8}-"
    try:
        assert api.post("/api/definitions", good_parts(prefix)).status == 204
        for path in good_paths(prefix):
            assert api.get(path).status == 200, path
        bindings = api.ok_json(f"/api/exchanges/%2F/{q(prefix)}x/bindings/source")
        assert [b["destination"] for b in bindings] == [f"{prefix}q"]
    finally:
        for path in good_paths(prefix):
            api.delete(path)


def test_failed_import_keeps_what_it_would_have_replaced(api, broker, unique):
    """An import that fails puts back the users, permissions, topic permissions, policies and
    vhost metadata it changed on its way."""
    warren_only(broker, "keeps the entries applied before the bad one")
    prefix = f"keep{abs(hash(unique)) % 10**8}-"
    vhost, user = f"{prefix}vh", f"{prefix}user"
    try:
        api.put(f"/api/vhosts/{q(vhost)}", {"description": "before", "tags": "t"})
        api.put(f"/api/users/{q(user)}", {"password": "pw", "tags": "management"})
        api.put(f"/api/permissions/{q(vhost)}/{q(user)}",
                {"configure": "c", "write": "w", "read": "r"})
        api.put(f"/api/policies/{q(vhost)}/pol", {"pattern": "^a", "definition": {
            "max-length": 1}})
        api.put(f"/api/topic-permissions/{q(vhost)}/{q(user)}",
                {"exchange": "amq.topic", "write": "w", "read": "r"})
        paths = (f"/api/vhosts/{q(vhost)}", f"/api/users/{q(user)}",
                 f"/api/permissions/{q(vhost)}/{q(user)}", f"/api/policies/{q(vhost)}/pol",
                 f"/api/topic-permissions/{q(vhost)}/{q(user)}")
        before = [api.ok_json(path) for path in paths]
        answer = api.post("/api/definitions", {
            "vhosts": [{"name": vhost, "metadata": {"description": "after", "tags": []}}],
            "users": [{"name": user, "password_hash": "", "tags": ["administrator"]}],
            "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*",
                             "read": ".*"}],
            "topic_permissions": [
                {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": ".*",
                 "read": ".*"},
                {"user": user, "vhost": vhost, "exchange": "logs", "write": ".*", "read": ".*"},
            ],
            "policies": [{"vhost": vhost, "name": "pol", "pattern": "^b",
                          "definition": {"max-length": 2}}],
            "queues": [{"name": "q", "vhost": vhost, "arguments": {"x-max-length": "ten"}}],
        })
        assert answer.status == 400
        after = [api.ok_json(path) for path in paths]
        assert after == before
    finally:
        api.delete(f"/api/vhosts/{q(vhost)}")
        api.delete(f"/api/users/{q(user)}")
