"""Configuration: warren.toml, WARREN_* variables and flags, their precedence, and the one-line
error a bad setting gets; then a real broker started from a file, seen through pika."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pika
import pytest
from http_json import get_json
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError

from broker.config import SETTINGS, Config, parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]


def _warren(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def test_defaults_match_rabbitmq():
    config = parse_args([], env={})
    assert config == Config()
    assert (config.port, config.management_port, config.frame_max, config.channel_max,
            config.heartbeat, config.disk_free_limit) == (5672, 15672, 131072, 2047, 60,
                                                         50_000_000)
    assert config.loopback_users == ("guest",) and config.memory_high_watermark == 0.4


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path):
    file = tmp_path / "warren.toml"
    file.write_text('[amqp]\nport = 1111\n[limits]\nheartbeat = 5\nchannel_max = 7\n'
                    '[log]\nlevel = "debug"\n')
    env = {"WARREN_CONFIG": str(file), "WARREN_PORT": "2222", "WARREN_HEARTBEAT": "9"}
    config = parse_args(["--port", "3333"], env=env)
    assert config.port == 3333  # flag over environment over file
    assert config.heartbeat == 9  # environment over file
    assert config.channel_max == 7 and config.log_level == "debug"  # file over default
    assert parse_args(["--config", str(file)], env={}).port == 1111


def test_file_understands_sizes_lists_and_booleans(tmp_path, certificates):
    file = tmp_path / "warren.toml"
    file.write_text(
        'loopback_users = []\n'
        '[alarms]\nmemory_high_watermark_absolute = "2GiB"\ndisk_free_limit = "1GB"\n'
        f'[amqps]\ncertfile = "{certificates.server.cert}"\nkeyfile = "{certificates.server.key}"\n'
        f'cacertfile = "{certificates.ca.cert}"\nverify_peer = true\n'
    )
    config = parse_args(["--config", str(file)], env={})
    assert config.memory_high_watermark_absolute == 2 * 1024**3
    assert config.disk_free_limit == 10**9
    assert config.loopback_users == ()
    assert config.amqps_enabled and config.amqps_verify_peer is True
    assert parse_args(["--loopback-users", "guest, ops"], env={}).loopback_users == ("guest",
                                                                                      "ops")


@pytest.mark.parametrize(("content", "message"), [
    ('[limits]\nfram_max = 5\n', "unknown setting 'limits.fram_max'"),
    ('[limits]\nframe_max = 100\n', "'limits.frame_max' in {file}: must be between 4096 and"),
    ('[limits]\nheartbeat = "soon"\n', "'limits.heartbeat' in {file}: expected an integer, got "
                                       "'soon'"),
    ('[alarms]\ndisk_free_limit = "lots"\n', "'alarms.disk_free_limit' in {file}: expected a "
                                             "size in bytes"),
    ('[alarms]\nmemory_high_watermark = 3\n', "expected a fraction of RAM"),
    ('[storage]\nmemory_high_watermark_paging_ratio = -0.5\n',
     "'storage.memory_high_watermark_paging_ratio' in {file}: expected a ratio between 0 and "
     "100, got -0.5"),
    ('[amqps]\ncertfile = "/nonexistent.pem"\n', "'amqps.certfile' in {file}: no such file"),
    ('[amqp]\nport = 5672\n[management]\nport = 5672\n', "'management.port' and 'amqp.port' are "
                                                         "both 5672"),
    ('[log]\nlevel = "loud"\n', "expected one of debug, info, warning, error"),
    # RabbitMQ's management.rates_mode: Warren keeps the basic rates only, and says so
    ('[management]\nrates_mode = "detailed"\n', "'management.rates_mode' in {file}: 'detailed' "
                                                 "is not supported: Warren keeps the 'basic' "
                                                 "rates only"),
    ('[management]\nrates_mode = "none"\n', "'none' is not supported"),
    ('[amqp\nport = 1\n', "is not valid TOML"),
    ('auth_mechanisms = ["EXTERNAL"]\n', "'auth_mechanisms' has EXTERNAL: it needs "
                                        "'amqps.verify_peer = true'"),
    ('auth_mechanisms = ["PLAIN", "CRAM-MD5"]\n', "expected some of PLAIN, AMQPLAIN, EXTERNAL"),
    ('[cluster]\netcd_endpoints = "etcd"\n', "'cluster.etcd_endpoints' in {file}: expected "
                                            "HOST:PORT[,HOST:PORT...], got 'etcd'"),
    ('[cluster]\netcd_endpoints = "etcd:2379"\n', "'cluster.etcd_endpoints' is set but "
                                                 "'cluster.secret' is not"),
    ('[cluster]\netcd_endpoints = "etcd:2379"\nsecret = "s"\nreplication_port = 5672\n',
     "'cluster.replication_port' and 'amqp.port' are both 5672"),
    ('[cluster]\nnode_name = "a b"\n', "'cluster.node_name' in {file}: expected letters, digits"),
    ('[cluster]\netcd_endpoints = "etcd:2379"\nsecret = "s"\nsize = 3\nmin_in_sync = 3\n',
     "'cluster.min_in_sync' is 3 but 'cluster.size' is 3: the leader and 3 followers need more "
     "nodes than that, nothing would ever be confirmed"),
])
def test_invalid_file_is_one_clear_line_and_exit_status_2(tmp_path, content, message):
    file = tmp_path / "warren.toml"
    file.write_text(content)
    result = _warren("--config", str(file))
    assert result.returncode == 2
    assert result.stderr.startswith("warren: configuration error: ")
    assert message.format(file=file) in result.stderr
    assert result.stderr.count("\n") == 1


def test_min_in_sync_defaults_to_a_majority_of_the_cluster_size():
    cluster = ["--cluster-etcd", "etcd:2379", "--cluster-secret", "s"]
    assert parse_args(cluster, env={}).required_in_sync == 1  # 3 nodes: leader + 1
    assert parse_args([*cluster, "--cluster-size", "5"], env={}).required_in_sync == 2
    assert parse_args(cluster, env={"WARREN_CLUSTER_SIZE": "4"}).required_in_sync == 2
    assert parse_args([*cluster, "--cluster-size", "5", "--min-in-sync", "0"],
                      env={}).required_in_sync == 0  # an explicit setting wins


def test_invalid_flag_and_variable_are_named(tmp_path):
    result = _warren("--port", "http", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--port: expected an integer, got 'http'" in result.stderr
    result = _warren(env={"WARREN_MAX_MESSAGE_SIZE": "0", "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert "$WARREN_MAX_MESSAGE_SIZE: must be between 1 and 536870912, got 0" in result.stderr


def test_missing_config_file_is_reported():
    result = _warren("--config", "/nonexistent/warren.toml")
    assert result.returncode == 2
    assert "cannot read config file /nonexistent/warren.toml" in result.stderr


def test_help_lists_every_setting():
    result = _warren("--help")
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.flag_name in result.stdout
        assert f"${setting.env_name}" in result.stdout
        assert f"[{setting.key}]" in result.stdout


def test_readme_lists_every_setting():
    readme = (REPO_ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.key}` | `{setting.flag_name}` | `{setting.env_name}`" in readme


def test_broker_started_from_a_file(warren_factory, tmp_path, unique):
    file = tmp_path / "warren.toml"
    file.write_text(
        'default_user = "ops"\ndefault_pass = "s3cret"\ndefault_vhost = "apps"\n'
        '[limits]\nframe_max = 8192\nchannel_max = 3\nheartbeat = 7\nmax_message_size = 1000\n'
    )
    broker = warren_factory(env={"WARREN_CONFIG": str(file)})
    params = pika.ConnectionParameters("127.0.0.1", broker.port, "apps",
                                       pika.PlainCredentials("ops", "s3cret"))
    connection = pika.BlockingConnection(params)
    try:
        negotiated = connection._impl.params
        assert (negotiated.frame_max, negotiated.channel_max, negotiated.heartbeat) == (
            8192, 3, 7)
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        channel.basic_publish("", unique, b"x" * 1000)  # at the limit: accepted
        channel.basic_publish("", unique, b"x" * 1001)
        with pytest.raises(ChannelClosedByBroker) as closed:
            channel.basic_get(unique)
        assert closed.value.reply_code == 406
        assert closed.value.reply_text == ("PRECONDITION_FAILED - message size 1001 is larger "
                                           "than configured max size 1000")
        assert connection.channel().queue_declare(unique, passive=True).method.message_count == 1
    finally:
        connection.close()
    api = f"http://127.0.0.1:{broker.management_port}/api"
    whoami = get_json(f"{api}/whoami", user=("ops", "s3cret"))
    assert whoami["name"] == "ops"
    # RabbitMQ lists the config file(s) it read at start in its node object
    node = get_json(f"{api}/nodes", user=("ops", "s3cret"))[0]
    assert node["config_files"] == [str(file.resolve())]
    assert node["rates_mode"] == get_json(f"{api}/overview", user=("ops", "s3cret"))[
        "rates_mode"] == "basic"


def test_node_connection_limit(warren_factory):
    broker = warren_factory(extra_args=["--max-connections", "2"])
    params = pika.ConnectionParameters("127.0.0.1", broker.port)
    first, second = pika.BlockingConnection(params), pika.BlockingConnection(params)
    try:
        # pika reports a close during connection.open as a probable access denial.
        with pytest.raises(ProbableAccessDeniedError) as refused:
            pika.BlockingConnection(params)
        assert ("(530) 'NOT_ALLOWED - connection refused: node connection limit (2) is reached'"
                in str(refused.value))
    finally:
        first.close()
    third = pika.BlockingConnection(params)  # a slot came free
    third.close()
    second.close()


def test_example_file_is_valid_and_holds_the_defaults():
    example = REPO_ROOT / "docs" / "warren.example.toml"
    assert parse_args(["--config", str(example)], env={}) == Config(config_file=example.resolve())
