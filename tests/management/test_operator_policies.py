"""/api/operator-policies: set, list and clear operator policies, their refusals, the limits
they put on matching queues (the lower of policy and operator policy), and their place in the
definitions (runtime parameters of component "operator_policy") and across a restart.

Every expectation was checked against RabbitMQ 3.10.8 first (RABBITMQ_OPERATOR_POLICIES.md
next to this file); run against it with WARREN_TEST_AMQP_PORT=5682 WARREN_TEST_HTTP_PORT=15682.
"""

from __future__ import annotations

import os
import re

import pytest
from brokers import run_warren
from management_api import NOT_FOUND, Api, q, wait_for_queue_field


def _refused(reason: str) -> tuple[int, dict[str, str]]:
    return 400, {"error": "bad_request", "reason": reason}


def test_operator_policy_lifecycle(api, unique, cleanup):
    name = f"op-{unique}"
    path = f"/api/operator-policies/%2F/{q(name)}"
    cleanup.append(path)
    pattern = f"^{re.escape(unique)}-"
    body = {"pattern": pattern, "definition": {"max-length": 10, "message-ttl": 5000},
            "priority": 1, "apply-to": "queues"}
    assert api.put(path, body).status == 201
    expected = {"vhost": "/", "name": name, **body}
    assert api.ok_json(path) == expected
    assert expected in api.ok_json("/api/operator-policies")
    assert expected in api.ok_json("/api/operator-policies/%2F")
    # RabbitMQ lists it among the runtime parameters too
    parameter = {"value": {"pattern": pattern, "definition": body["definition"], "priority": 1,
                           "apply-to": "queues"},
                 "vhost": "/", "component": "operator_policy", "name": name}
    for listed in ("/api/parameters", "/api/parameters/operator_policy",
                   "/api/parameters/operator_policy/%2F"):
        assert parameter in api.ok_json(listed), listed
    assert name not in [p["name"] for p in api.ok_json("/api/policies")]

    # a PUT replaces it; omitted priority and apply-to are 0 and "all"
    assert api.put(path, {"pattern": pattern, "definition": {"max-length": 3}}).status == 204
    assert api.ok_json(path) == {"vhost": "/", "name": name, "pattern": pattern,
                                 "apply-to": "all", "definition": {"max-length": 3},
                                 "priority": 0}
    assert api.delete(path).status == 204
    answer = api.delete(path)
    assert (answer.status, answer.json()) == (404, NOT_FOUND)
    assert api.get(path).status == 404


# RabbitMQ 3.10.8's answers; an operator policy's texts are not HTML-escaped (a policy's are)
@pytest.mark.parametrize("body, reason", [
    ({"definition": {"dead-letter-exchange": "dlx"}},
     'Validation failed\n\n[{<<"dead-letter-exchange">>,<<"dlx">>}] are not recognised '
     'policy settings\n'),
    ({"definition": {"overflow": "drop-head"}},
     'Validation failed\n\n[{<<"overflow">>,<<"drop-head">>}] are not recognised policy '
     'settings\n'),
    ({"definition": {"bogus": 1}},
     'Validation failed\n\n[{<<"bogus">>,1}] are not recognised policy settings\n'),
    ({"definition": {"max-length": "x"}},
     'Validation failed\n\n<<"x">> is not a valid maximum length\n'),
    ({"definition": {"max-length": -1}}, "Validation failed\n\n-1 is not a valid maximum length\n"),
    ({"definition": {"expires": 0}}, "Validation failed\n\n0 is not a valid queue expiry\n"),
    ({"definition": {"message-ttl": -1}}, "Validation failed\n\n-1 is not a valid message TTL\n"),
    ({"definition": {"delivery-limit": "a"}},
     'Validation failed\n\n<<"a">> is not a valid delivery limit\n'),
    ({"definition": {"max-in-memory-length": 1.5}},
     "Validation failed\n\n1.5 is not a valid maximum memory in bytes\n"),
    ({"definition": {"max-in-memory-bytes": -1}},
     "Validation failed\n\n-1 is not a valid maximum memory in bytes\n"),
    ({"definition": {}}, "Validation failed\n\nno policy provided\n"),
    ({}, "[{key_missing,definition}]"),
    ({"definition": {"max-length": 1}, "apply-to": "x"},
     "Validation failed\n\napply-to 'x' unrecognised; should be 'queues', 'exchanges' or "
     "'all'\n"),
    ({"definition": {"max-length": 1}, "priority": "a"},
     'Validation failed\n\npriority should be a number, actually was <<"a">>\n'),
], ids=["dlx", "overflow", "unknown", "not-a-number", "negative", "expires-0", "ttl",
        "delivery-limit", "in-memory-length", "in-memory-bytes", "empty", "no-definition",
        "apply-to", "priority"])
def test_operator_policy_refusals(api, unique, cleanup, body, reason):
    path = f"/api/operator-policies/%2F/{q('op-' + unique)}"
    cleanup.append(path)  # should a broker accept it, it must not leak into other tests
    answer = api.put(path, {"pattern": f"^{re.escape(unique)}-nothing$", **body})
    assert (answer.status, answer.json()) == _refused(reason)
    assert api.get(path).status == 404


def test_a_policy_shares_the_checks_with_its_texts_escaped(api, unique, cleanup):
    """A policy's `expires` must be at least 1 too, and an unknown key's string value is
    written as an Erlang binary (both HTML-escaped there)."""
    path = f"/api/policies/%2F/{q('p-' + unique)}"
    cleanup.append(path)
    for definition, reason in (
            ({"expires": 0}, "Validation failed\n\n0 is not a valid queue expiry\n"),
            ({"bogus": "x"}, "Validation failed\n\n[{&lt;&lt;\"bogus\"&gt;&gt;,"
                             "&lt;&lt;\"x\"&gt;&gt;}] are not recognised policy settings\n")):
        answer = api.put(path, {"pattern": f"^{re.escape(unique)}-nothing$",
                                "definition": definition})
        assert (answer.status, answer.json()) == _refused(reason)
    assert api.get(path).status == 404


def test_operator_policy_bad_pattern_and_vhost(api, unique, cleanup):
    path = f"/api/operator-policies/%2F/{q('op-' + unique)}"
    cleanup.append(path)
    answer = api.put(path, {"pattern": "(", "definition": {"max-length": 1}})
    assert (answer.status, answer.json()) == _refused(
        'Validation failed\n\npattern should be regular expression but is invalid: '
        '{"missing )",1}\n')
    answer = api.put("/api/operator-policies/no-such-vhost/op", {
        "pattern": "x", "definition": {"max-length": 1}})
    assert (answer.status, answer.json()) == (404, {"error": "not_found",
                                                    "reason": "vhost_not_found"})


def test_only_an_administrator_sets_reads_or_clears_one(api, broker, unique, cleanup):
    """A policymaker may set policies but not operator policies, nor read one by name; the
    list shows them to any user of the vhost (RabbitMQ 3.10.8)."""
    user, name = f"pm-{unique}", f"op-{unique}"
    path = f"/api/operator-policies/%2F/{q(name)}"
    cleanup.extend([f"/api/users/{q(user)}", path])
    assert api.put(f"/api/users/{q(user)}", {"password": "pw", "tags": "policymaker"}).status \
        == 201
    assert api.put(f"/api/permissions/%2F/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    body = {"pattern": f"^{re.escape(unique)}-", "definition": {"max-length": 1}}
    assert api.put(path, body).status == 201
    policymaker = Api(broker.host, broker.management_port, (user, "pw"))
    not_administrator = (401, {"error": "not_authorised", "reason": "Not administrator user"})
    for answer in (policymaker.put(path, body), policymaker.get(path),
                   policymaker.delete(path)):
        assert (answer.status, answer.json()) == not_administrator
    assert name in [p["name"] for p in policymaker.ok_json("/api/operator-policies")]
    assert api.get(path).status == 200


def test_operator_policy_limits_matching_queues(api, unique, cleanup):
    """The lower of the policy's and the operator policy's value applies, and the queue
    shows both names and the merged definition; the queue's own argument still wins where it
    is lower. Clearing the operator policy lifts its limit."""
    queue = f"{unique}-q"
    policy, operator = f"p-{unique}", f"op-{unique}"
    cleanup.extend([f"/api/queues/%2F/{q(queue)}", f"/api/policies/%2F/{q(policy)}",
                    f"/api/operator-policies/%2F/{q(operator)}"])
    pattern = f"^{re.escape(unique)}-"
    api.create_queue("/", queue, arguments={"x-max-length": 20, "x-message-ttl": 600000})
    assert api.put(f"/api/policies/%2F/{q(policy)}", {
        "pattern": pattern, "apply-to": "queues",
        "definition": {"max-length": 15, "expires": 900000, "message-ttl": 800000}}).status == 201
    assert api.put(f"/api/operator-policies/%2F/{q(operator)}", {
        "pattern": pattern, "apply-to": "queues",
        "definition": {"max-length": 2, "message-ttl": 700000}}).status == 201
    shown = wait_for_queue_field(api, "/", queue, policy=policy, operator_policy=operator)
    assert shown["effective_policy_definition"] == {
        "expires": 900000, "max-length": 2, "message-ttl": 700000}
    for payload in "abc":
        assert api.publish("/", "amq.default", queue, payload)
    wait_for_queue_field(api, "/", queue, messages=2)
    bodies = [m["payload"] for m in api.get_messages("/", queue, ackmode="ack_requeue_true")]
    assert bodies == ["b", "c"]

    assert api.delete(f"/api/operator-policies/%2F/{q(operator)}").status == 204
    shown = wait_for_queue_field(api, "/", queue, operator_policy=None)
    assert shown["effective_policy_definition"] == {
        "max-length": 15, "expires": 900000, "message-ttl": 800000}
    for payload in "def":
        assert api.publish("/", "amq.default", queue, payload)
    wait_for_queue_field(api, "/", queue, messages=5)


def test_operator_policy_without_a_policy(api, unique, cleanup):
    queue, operator = f"{unique}-q", f"op-{unique}"
    cleanup.extend([f"/api/queues/%2F/{q(queue)}", f"/api/operator-policies/%2F/{q(operator)}"])
    api.create_queue("/", queue)
    assert api.put(f"/api/operator-policies/%2F/{q(operator)}", {
        "pattern": f"^{re.escape(unique)}-", "definition": {"max-length": 1}}).status == 201
    shown = wait_for_queue_field(api, "/", queue, operator_policy=operator)
    assert (shown["policy"], shown["effective_policy_definition"]) == (None, {"max-length": 1})
    for payload in "ab":
        assert api.publish("/", "amq.default", queue, payload)
    wait_for_queue_field(api, "/", queue, messages=1)
    assert [m["payload"] for m in api.get_messages("/", queue)] == ["b"]


def test_operator_policies_in_definitions(api, unique, cleanup):
    """Exported and imported as runtime parameters of component "operator_policy" (also in a
    vhost's export, which keeps their "vhost"); an import checks them as the endpoint does
    (its texts HTML-escaped, with the entry's place) and refuses a component it does not know."""
    name, imported = f"op-{unique}", f"op-imp-{unique}"
    cleanup.extend([f"/api/operator-policies/%2F/{q(name)}",
                    f"/api/operator-policies/%2F/{q(imported)}"])
    pattern = f"^{re.escape(unique)}-"
    assert api.put(f"/api/operator-policies/%2F/{q(name)}", {
        "pattern": pattern, "definition": {"max-length": 4}, "apply-to": "queues"}).status == 201
    entry = {"value": {"pattern": pattern, "definition": {"max-length": 4}, "priority": 0,
                       "apply-to": "queues"},
             "vhost": "/", "component": "operator_policy", "name": name}
    assert entry in api.ok_json("/api/definitions")["parameters"]
    assert entry in api.ok_json("/api/definitions/%2F")["parameters"]

    new_entry = {**entry, "name": imported,
                 "value": {**entry["value"], "definition": {"max-length-bytes": 1000}}}
    assert api.post("/api/definitions", {"parameters": [new_entry]}).status == 204
    assert api.ok_json(f"/api/operator-policies/%2F/{q(imported)}") == {
        "vhost": "/", "name": imported, "pattern": pattern, "apply-to": "queues",
        "definition": {"max-length-bytes": 1000}, "priority": 0}

    place = f" (//operator_policy/{imported})"
    for value, reason in (
            ({**new_entry["value"], "definition": {"max-length": "x"}},
             f"Validation failed\n\n&lt;&lt;\"x\"&gt;&gt; is not a valid maximum length\n{place}"),
            ({**new_entry["value"], "definition": {"overflow": "drop-head"}},
             "Validation failed\n\n[{&lt;&lt;\"overflow\"&gt;&gt;,&lt;&lt;\"drop-head\"&gt;&gt;}]"
             f" are not recognised policy settings\n{place}"),
            ({"pattern": pattern, "definition": {"max-length": 1}},
             f'Validation failed\n\nKey "priority" not found in {imported}\n{place}')):
        answer = api.post("/api/definitions", {"parameters": [{**new_entry, "value": value}]})
        assert (answer.status, answer.json()) == _refused(reason)
    unknown = {"value": {"uri": "amqp://"}, "vhost": "/", "component": "federation-upstream",
               "name": f"fed-{unique}"}
    answer = api.post("/api/definitions", {"parameters": [unknown]})
    assert (answer.status, answer.json()) == _refused(
        f"Validation failed\n\ncomponent federation-upstream not found\n"
        f" (//federation-upstream/fed-{unique})")
    assert api.ok_json(f"/api/operator-policies/%2F/{q(imported)}")["definition"] == {
        "max-length-bytes": 1000}


def test_operator_policies_survive_a_restart(tmp_path):
    if os.environ.get("WARREN_TEST_AMQP_PORT"):
        pytest.skip("restarts a Warren of its own")
    body = {"pattern": "^capped-", "definition": {"max-length": 1}, "priority": 2,
            "apply-to": "queues"}
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.put("/api/operator-policies/%2F/cap", body).status == 201
        api.create_queue("/", "capped-q", durable=True)
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.ok_json("/api/operator-policies/%2F/cap") == {"vhost": "/", "name": "cap",
                                                                 **body}
        assert api.ok_json("/api/queues/%2F/capped-q")["operator_policy"] == "cap"
        for payload in "ab":
            assert api.publish("/", "amq.default", "capped-q", payload)
        assert [m["payload"] for m in api.get_messages("/", "capped-q")] == ["b"]


def test_an_operator_policy_set_and_cleared_as_a_runtime_parameter(api, unique, cleanup):
    """/api/parameters/operator_policy/{vhost}/{name}: PUT {"value": ...} sets the operator
    policy (its value must name a priority; texts HTML-escaped), GET shows it as the
    parameter, DELETE clears it."""
    name = f"op-par-{unique}"
    path = f"/api/parameters/operator_policy/%2F/{q(name)}"
    cleanup.append(f"/api/operator-policies/%2F/{q(name)}")
    value = {"pattern": f"^{re.escape(unique)}-", "definition": {"max-length": 3},
             "priority": 0}
    for bad, reason in (
            ({key: item for key, item in value.items() if key != "priority"},
             f'Validation failed\n\nKey "priority" not found in {name}\n'),
            ({**value, "definition": {"max-length": "x"}},
             'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid maximum length\n'),
            ({**value, "definition": {"bogus": "x"}},
             'Validation failed\n\n[{&lt;&lt;"bogus"&gt;&gt;,&lt;&lt;"x"&gt;&gt;}] are not '
             'recognised policy settings\n'),
            ("str", f'Validation failed\n\n{name} not a list &lt;&lt;"str"&gt;&gt;\n')):
        answer = api.put(path, {"value": bad})
        assert (answer.status, answer.json()) == _refused(reason)
    answer = api.put(path, {"nov": 1})
    assert (answer.status, answer.json()) == _refused("[{key_missing,value}]")
    assert api.get(path).status == 404

    assert api.put(path, {"value": {**value, "apply-to": "queues"}}).status == 201
    assert api.ok_json(path) == {"value": {**value, "apply-to": "queues"}, "vhost": "/",
                                 "component": "operator_policy", "name": name}
    assert api.ok_json(f"/api/operator-policies/%2F/{q(name)}")["definition"] == {
        "max-length": 3}
    assert api.put(path, {"value": {**value, "definition": {"max-length": 2}}}).status == 204
    assert api.ok_json(path)["value"] == {**value, "definition": {"max-length": 2}}
    shown = api.ok_json(f"/api/operator-policies/%2F/{q(name)}")
    assert (shown["definition"], shown["apply-to"]) == ({"max-length": 2}, "undefined")
    assert api.delete(path).status == 204
    assert api.get(f"/api/operator-policies/%2F/{q(name)}").status == 404
    answer = api.delete(path)
    assert (answer.status, answer.json()) == (404, NOT_FOUND)


def test_runtime_parameters_of_a_component_warren_has_not(api, unique):
    """RabbitMQ 3.10.8 without the federation plugin: it lists none, has none by name, and
    refuses to set one."""
    path = f"/api/parameters/federation-upstream/%2F/fed-{unique}"
    assert api.ok_json("/api/parameters/federation-upstream") == []
    assert api.ok_json("/api/parameters/federation-upstream/%2F") == []
    answer = api.get("/api/parameters/federation-upstream/no-such-vhost")
    assert (answer.status, answer.json()) == (404, NOT_FOUND)
    assert api.get(path).status == 404
    answer = api.put(path, {"value": {"uri": "amqp://"}})
    assert (answer.status, answer.json()) == _refused(
        "Validation failed\n\ncomponent federation-upstream not found\n")
    answer = api.put(f"/api/parameters/federation-upstream/no-such-vhost/fed-{unique}",
                     {"value": {"uri": "amqp://"}})
    assert (answer.status, answer.json()) == (404, {"error": "not_found",
                                                    "reason": "vhost_not_found"})
    answer = api.delete(path)
    assert (answer.status, answer.json()) == (404, NOT_FOUND)


def test_an_operator_policy_parameter_without_apply_to_applies_to_nothing(api, unique, cleanup):
    """RabbitMQ 3.10.8 stores such a parameter's apply-to as "undefined", and no queue (or
    exchange) gets it; one with apply-to "all" limits the queue."""
    queue, name = f"{unique}-q", f"op-par-{unique}"
    path = f"/api/parameters/operator_policy/%2F/{q(name)}"
    cleanup.extend([f"/api/queues/%2F/{q(queue)}", f"/api/operator-policies/%2F/{q(name)}"])
    value = {"pattern": f"^{re.escape(unique)}-", "definition": {"max-length": 1},
             "priority": 0}
    assert api.put(path, {"value": value}).status == 201
    api.create_queue("/", queue)
    for payload in "ab":
        assert api.publish("/", "amq.default", queue, payload)
    shown = wait_for_queue_field(api, "/", queue, messages=2)
    assert (shown["operator_policy"], shown["effective_policy_definition"]) == (None, {})
    assert api.put(path, {"value": {**value, "apply-to": "all"}}).status == 204
    shown = wait_for_queue_field(api, "/", queue, operator_policy=name)
    assert shown["effective_policy_definition"] == {"max-length": 1}
