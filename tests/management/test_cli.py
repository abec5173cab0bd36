"""`warren ctl`: rabbitmqctl's everyday commands over the management API, run as a user runs
them (a subprocess), against the session's Warren; output, effects on the broker, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pika
import pytest

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("WARREN_TEST_AMQP_PORT")), reason="warren ctl talks to Warren"
)


def ctl(broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    url = f"http://127.0.0.1:{broker.management_port}"
    return subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--url", url, *args],
        capture_output=True, text=True, input=stdin, timeout=30,
    )


def rows(result: subprocess.CompletedProcess) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


@pytest.fixture
def amqp(broker):
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    yield connection
    if connection.is_open:
        connection.close()


def test_list_queues_is_tab_separated_with_a_header(broker, amqp, unique):
    channel = amqp.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"one")
    channel.basic_publish("", unique, b"two")
    table = rows(ctl(broker, "list_queues"))
    assert table[0] == ["name", "messages"]
    assert [unique, "2"] in table[1:]
    assert [unique, "2", "true"] in rows(ctl(broker, "list_queues", "name", "messages",
                                              "auto_delete"))[1:]


def test_json_output(broker, amqp, unique):
    amqp.channel().queue_declare(unique, auto_delete=True)
    result = ctl(broker, "--json", "list_queues")
    assert result.returncode == 0, result.stderr
    assert unique in [queue["name"] for queue in json.loads(result.stdout)]


def test_users_vhosts_permissions(broker, unique):
    vhost, user = f"{unique}-vh", f"{unique}-user"
    assert ctl(broker, "add_vhost", vhost).returncode == 0
    assert ctl(broker, "add_user", user, "secret", "--tags", "management").returncode == 0
    assert ctl(broker, "set_permissions", "-p", vhost, user, ".*", ".*", ".*").returncode == 0
    assert [user, "management"] in rows(ctl(broker, "list_users"))[1:]
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        broker.host, broker.port, vhost, pika.PlainCredentials(user, "secret")))
    connection.close()
    assert ctl(broker, "delete_user", user).returncode == 0
    assert ctl(broker, "delete_vhost", vhost).returncode == 0
    assert [vhost] not in rows(ctl(broker, "list_vhosts"))[1:]


def test_topic_permissions(broker, unique):
    vhost, user = f"{unique}-vh", f"{unique}-user"
    assert ctl(broker, "add_vhost", vhost).returncode == 0
    assert ctl(broker, "add_user", user, "secret").returncode == 0
    try:
        assert ctl(broker, "set_permissions", "-p", vhost, user, ".*", ".*", ".*").returncode == 0
        result = ctl(broker, "set_topic_permissions", "-p", vhost, user, "amq.topic", "^a\\.",
                     "^b")
        assert result.returncode == 0, result.stderr
        assert rows(ctl(broker, "list_topic_permissions", "-p", vhost)) == [
            ["user", "exchange", "write", "read"], [user, "amq.topic", "^a\\.", "^b"]]
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            broker.host, broker.port, vhost, pika.PlainCredentials(user, "secret")))
        try:
            channel = connection.channel()
            channel.basic_publish("amq.topic", "a.b", b"allowed")
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                channel.basic_publish("amq.topic", "c.d", b"refused")
                channel.basic_qos(prefetch_count=1)
            assert closed.value.reply_code == 403
        finally:
            connection.close()
        bad = ctl(broker, "set_topic_permissions", "-p", vhost, user, "amq.topic", "(", ".*")
        assert bad.returncode == 1 and "invalid_regexp" in bad.stderr
        one = ctl(broker, "clear_topic_permissions", "-p", vhost, user, "amq.topic")
        assert one.returncode == 64 and "not supported" in one.stderr
        assert ctl(broker, "clear_topic_permissions", "-p", vhost, user).returncode == 0
        assert rows(ctl(broker, "list_topic_permissions", "-p", vhost)) == [
            ["user", "exchange", "write", "read"]]
    finally:
        ctl(broker, "delete_user", user)
        ctl(broker, "delete_vhost", vhost)


def test_policies_apply(broker, amqp, unique):
    channel = amqp.channel()
    channel.queue_declare(unique, auto_delete=True)
    result = ctl(broker, "set_policy", unique, f"^{unique}$", '{"max-length": 1}',
                 "--apply-to", "queues")
    assert result.returncode == 0, result.stderr
    try:
        channel.confirm_delivery()
        for body in (b"a", b"b", b"c"):
            channel.basic_publish("", unique, body)
        assert channel.queue_declare(unique, passive=True).method.message_count == 1
        assert [unique, f"^{unique}$", "queues", '{"max-length": 1}', "0"] in rows(
            ctl(broker, "list_policies"))[1:]
    finally:
        assert ctl(broker, "clear_policy", unique).returncode == 0


def test_operator_policies_cap_what_a_policy_allows(broker, amqp, unique):
    """rabbitmqctl's set_operator_policy, list_operator_policies and clear_operator_policy:
    the lower max-length of policy and operator policy applies; a key an operator policy does
    not take is refused with the API's reason (exit 1)."""
    channel = amqp.channel()
    channel.queue_declare(unique, auto_delete=True)
    operator = f"op-{unique}"
    assert ctl(broker, "set_policy", unique, f"^{unique}$", '{"max-length": 5}').returncode == 0
    result = ctl(broker, "set_operator_policy", operator, f"^{unique}$", '{"max-length": 1}',
                 "--apply-to", "queues", "--priority", "3")
    assert result.returncode == 0, result.stderr
    try:
        channel.confirm_delivery()
        for body in (b"a", b"b", b"c"):
            channel.basic_publish("", unique, body)
        assert channel.queue_declare(unique, passive=True).method.message_count == 1
        assert [operator, f"^{unique}$", "queues", '{"max-length": 1}', "3"] in rows(
            ctl(broker, "list_operator_policies"))[1:]
        refused = ctl(broker, "set_operator_policy", operator, ".*",
                      '{"dead-letter-exchange": "x"}')
        assert refused.returncode == 1
        assert "are not recognised policy settings" in refused.stderr
    finally:
        assert ctl(broker, "clear_operator_policy", operator).returncode == 0
        assert ctl(broker, "clear_policy", unique).returncode == 0
    assert operator not in [row[0] for row in rows(ctl(broker, "list_operator_policies"))]


def test_purge_and_delete_queue(broker, amqp, unique):
    channel = amqp.channel()
    channel.queue_declare(unique)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"x")
    assert ctl(broker, "purge_queue", unique).returncode == 0
    assert channel.queue_declare(unique, passive=True).method.message_count == 0
    assert ctl(broker, "delete_queue", unique).returncode == 0
    assert [unique, "0"] not in rows(ctl(broker, "list_queues"))[1:]


def test_export_and_import_definitions(broker, unique, tmp_path):
    exported = ctl(broker, "export_definitions", "-")
    document = json.loads(exported.stdout)
    assert {"users", "vhosts", "permissions", "queues", "exchanges", "bindings"} <= set(document)
    document["queues"] = [{"name": unique, "vhost": "/", "durable": True,
                           "auto_delete": False, "arguments": {}}]
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(document))
    assert ctl(broker, "import_definitions", str(path)).returncode == 0
    assert unique in [row[0] for row in rows(ctl(broker, "list_queues"))[1:]]
    assert ctl(broker, "delete_queue", unique).returncode == 0


def test_close_connection(broker, amqp):
    names = [row[0] for row in rows(ctl(broker, "list_connections"))[1:]]
    local = amqp._impl._transport._sock.getsockname()
    name = next(n for n in names if n.startswith(f"{local[0]}:{local[1]} "))
    assert ctl(broker, "close_connection", name, "maintenance").returncode == 0
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        amqp.process_data_events(time_limit=2)
        amqp.channel()
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320, "CONNECTION_FORCED - maintenance")


def test_errors_and_exit_codes(broker):
    missing = ctl(broker, "delete_queue", "no-such-queue-here")
    assert missing.returncode == 1
    assert "Not Found" in missing.stderr
    assert ctl(broker, "no_such_command").returncode == 64
    assert ctl(broker, "set_policy", "p", ".*", "{not json").returncode == 64
    refused = subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--url", "http://127.0.0.1:1", "list_queues"],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode == 69
    assert "cannot reach the broker" in refused.stderr
    wrong = ctl(broker, "--password", "wrong", "list_queues")
    assert wrong.returncode == 1 and "Login failed" in wrong.stderr


def test_defaults_come_from_the_brokers_own_variables(warren_factory):
    """Run beside the broker (as `docker exec warren warren ctl ...`), ctl finds the management
    port and the default user in the same WARREN_* variables the broker was started with."""
    env = {"WARREN_DEFAULT_USER": "ops", "WARREN_DEFAULT_PASS": "s3cret"}
    broker = warren_factory(env=env)
    env |= {"WARREN_MANAGEMENT_PORT": str(broker.management_port)}
    result = subprocess.run([sys.executable, "-m", "broker", "ctl", "list_users"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    assert "ops" in [row.split("\t")[0] for row in result.stdout.splitlines()]


def test_cluster_status_of_a_single_node(broker):
    """A single node is the cluster of one it is: its name, running, no role."""
    result = ctl(broker, "cluster_status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Cluster status of warren@")
    assert lines[1:] == ["name\trunning\tcluster_role", f"{lines[0][18:-4]}\ttrue\t"]


def test_trace_on_and_off(broker, unique):
    """trace_on / trace_off say what rabbitmqctl says and switch the vhost's `tracing`; a
    vhost that does not exist is refused (the API's PUT would make it)."""
    vhost = f"trace-{unique}"
    assert ctl(broker, "add_vhost", vhost).returncode == 0
    try:
        on = ctl(broker, "trace_on", "-p", vhost)
        assert (on.returncode, on.stdout) == (0, f'Starting tracing for vhost "{vhost}" ...\n'
                                                 f"Trace enabled for vhost {vhost}\n")
        assert [vhost, "true"] in rows(ctl(broker, "list_vhosts", "name", "tracing"))
        off = ctl(broker, "trace_off", "-p", vhost)
        assert (off.returncode, off.stdout.splitlines()[-1]) == (
            0, f"Trace disabled for vhost {vhost}")
        assert [vhost, "false"] in rows(ctl(broker, "list_vhosts", "name", "tracing"))
    finally:
        ctl(broker, "delete_vhost", vhost)
    missing = ctl(broker, "trace_on", "-p", vhost)
    assert missing.returncode == 1
    assert f"virtual host '{vhost}' does not exist" in missing.stderr
    assert vhost not in [row[0] for row in rows(ctl(broker, "list_vhosts"))]
