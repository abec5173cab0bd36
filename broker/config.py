"""Every setting of the broker, and how one Config is resolved from command-line flags, WARREN_*
environment variables, a warren.toml file and the defaults, in that order of precedence.

Each setting is declared once in SETTINGS: its Config field, its key in warren.toml, its flag and
environment variable (both derived from the field name unless given), a parser that checks the
value and a help text. `warren --help` and the README's table are generated from that list."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.listeners import DUAL_STACK


@dataclass
class Config:
    host: tuple[str, ...] = DUAL_STACK  # every IPv6 and IPv4 address, as RabbitMQ listens
    port: int = 5672
    amqps_host: tuple[str, ...] = DUAL_STACK
    amqps_port: int = 5671
    amqps_certfile: Path | None = None  # the AMQPS listener runs only when a certificate is set
    amqps_keyfile: Path | None = None
    amqps_cacertfile: Path | None = None
    amqps_verify_peer: bool = False
    amqps_fail_if_no_peer_cert: bool = False
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "AMQPLAIN")
    ssl_cert_login_from: str = "distinguished_name"  # or common_name: EXTERNAL's user name
    management_host: tuple[str, ...] = DUAL_STACK
    management_port: int = 15672
    management_certfile: Path | None = None  # HTTPS when set
    management_keyfile: Path | None = None
    collect_statistics_interval: int = 5000  # ms between samples of the API's rates
    rates_mode: str = "basic"  # RabbitMQ's management.rates_mode; the only one Warren keeps
    data_dir: Path = Path("data")
    log_level: str = "info"
    log_file: Path | None = None
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    loopback_users: tuple[str, ...] = ("guest",)
    load_definitions: Path | None = None
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_connections: int = 0  # 0: no limit
    max_message_size: int = 128 * 1024 * 1024  # RabbitMQ 3.10's default
    memory_high_watermark: float = 0.4  # fraction of RAM (or of the cgroup limit)
    memory_high_watermark_absolute: int | None = None  # bytes; wins over the fraction
    # Transient backlogs page out only above this share of the watermark (RabbitMQ's
    # vm_memory_high_watermark_paging_ratio); 0: always; above 1: not before the alarm.
    memory_high_watermark_paging_ratio: float = 0.5
    disk_free_limit: int = 50_000_000  # bytes free on the data dir's file system
    segment_size: int = 64 * 1024 * 1024
    resident_head: int = 2048  # messages of a queue kept as objects; those behind: compact rows
    page_out_after: int = 2000  # ms a message waits behind the head before it is paged out
    cluster_etcd: tuple[str, ...] = ()  # etcd HOST:PORT endpoints; empty: a single node
    node_name: str | None = None  # in a cluster: this node's unique name
    cluster_name: str = "warren"
    advertise_host: str = "127.0.0.1"  # where the other nodes and passed-through clients reach us
    replication_port: int = 5679
    cluster_secret: str | None = None
    cluster_size: int = 3  # nodes of the cluster: min_in_sync's default is a majority of them
    min_in_sync: int | None = None  # followers that must hold a record (None: cluster_size // 2)
    lease_ttl: int = 5  # seconds: the etcd lease of each node (and of the leader key)
    replication_timeout: int = 2000  # ms without an ack before a follower leaves the in-sync set
    config_file: Path | None = None  # the warren.toml read at start (not a setting: /api/nodes)

    @property
    def clustered(self) -> bool:
        return bool(self.cluster_etcd)

    @property
    def required_in_sync(self) -> int:
        """Followers that must have fsynced a record before it is confirmed: min_in_sync, by
        default cluster_size // 2 (with the leader, a majority of all the nodes)."""
        return self.cluster_size // 2 if self.min_in_sync is None else self.min_in_sync

    @property
    def amqps_enabled(self) -> bool:
        return self.amqps_certfile is not None

    @property
    def management_https(self) -> bool:
        return self.management_certfile is not None


class ConfigError(Exception):
    """A setting has a value the broker cannot use; the text names the setting and the problem."""


# -- value parsers: each takes what TOML, a flag or an environment variable gave -------------

Parser = Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _integer(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


_SIZE = re.compile(r"([0-9]+)([kmg](?:i?b)?)?", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes, in RabbitMQ's notation: 50000000, "50MB" and "1GB" (powers of 1000), "512MiB",
    "2GiB", "64m" and "1g" (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a size in bytes such as 50000000, \"50MB\" or \"2GiB\", "
                         f"got {value!r}")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    power = " kmg".index(unit[0]) if unit else 0
    base = 1000 if unit.endswith("b") and not unit.endswith("ib") else 1024
    return number * base**power


def _as_number(value: Any) -> Any:
    """A string that spells a number, as that number; anything else as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ratio(value: Any) -> float:
    value = _as_number(value)
    if not _is_number(value) or not 0 <= value <= 100:
        raise ValueError(f"expected a ratio between 0 and 100, got {value!r}")
    return float(value)


def _fraction(value: Any) -> float:
    value = _as_number(value)
    if not _is_number(value) or not 0 < value <= 1:
        raise ValueError(f"expected a fraction of RAM above 0 and at most 1, got {value!r}")
    return float(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"expected true or false, got {value!r}")


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _existing_file(value: Any) -> Path:
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _names(value: Any) -> tuple[str, ...]:
    """A list of user names: a TOML array, or a comma-separated string."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return tuple(value)
    raise ValueError(f"expected a list of user names, got {value!r}")


def _addresses(value: Any) -> tuple[str, ...]:
    """Addresses to listen on: a TOML array, or a comma-separated string ("::1,127.0.0.1")."""
    addresses = _names(value)
    if not addresses:
        raise ValueError(f"expected one address or more, got {value!r}")
    return addresses


def _mechanisms(value: Any) -> tuple[str, ...]:
    names = tuple(name.upper() for name in _names(value))
    unknown = [name for name in names if name not in ("PLAIN", "AMQPLAIN", "EXTERNAL")]
    if unknown or not names:
        raise ValueError(f"expected some of PLAIN, AMQPLAIN, EXTERNAL, got {value!r}")
    return names


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if _text(value).lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()
    return parse


_PORT = _integer(1, 65535)


def _rates_mode(value: Any) -> str:
    """RabbitMQ's management.rates_mode: Warren keeps `basic` only, and refuses the others
    rather than run as if they were set (`detailed` adds per channel, exchange and queue pair
    counts; `none` drops the message rates)."""
    mode = _text(value).lower()
    if mode in ("detailed", "none"):
        raise ValueError(f"'{mode}' is not supported: Warren keeps the 'basic' rates only")
    if mode != "basic":
        raise ValueError(f"expected basic, got {value!r}")
    return mode


def _endpoints(value: Any) -> tuple[str, ...]:
    """etcd endpoints: HOST:PORT, comma-separated (or a TOML array)."""
    endpoints = _names(value)
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {value!r}")
    return endpoints


_NODE_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _node_name(value: Any) -> str:
    if not _NODE_NAME.fullmatch(_text(value)):
        raise ValueError(f"expected letters, digits and _.@- (at most 100), got {value!r}")
    return value


@dataclass(frozen=True)
class Setting:
    field: str
    key: str  # dotted path in warren.toml
    parse: Parser
    help: str
    flag: str = ""  # default: --field-name
    env: str = ""  # default: WARREN_FIELD_NAME
    default: str = ""  # the default as help and the README say it, when not Config's value

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.env or "WARREN_" + self.field.upper()


SETTINGS = [
    Setting("host", "amqp.bind", _addresses, "addresses the AMQP listener binds, "
            "comma-separated (default: every IPv6 and IPv4 address)", flag="--bind",
            env="WARREN_BIND"),
    Setting("port", "amqp.port", _PORT, "AMQP port"),
    Setting("amqps_host", "amqps.bind", _addresses, "addresses the AMQPS (TLS) listener binds",
            flag="--amqps-bind", env="WARREN_AMQPS_BIND"),
    Setting("amqps_port", "amqps.port", _PORT, "AMQPS port; the listener runs when "
            "amqps.certfile is set"),
    Setting("amqps_certfile", "amqps.certfile", _existing_file,
            "PEM certificate (chain) of the AMQPS listener"),
    Setting("amqps_keyfile", "amqps.keyfile", _existing_file,
            "PEM private key of that certificate"),
    Setting("amqps_cacertfile", "amqps.cacertfile", _existing_file,
            "PEM CA bundle that client certificates are verified against"),
    Setting("amqps_verify_peer", "amqps.verify_peer", _boolean,
            "ask clients for a certificate and verify it against amqps.cacertfile"),
    Setting("amqps_fail_if_no_peer_cert", "amqps.fail_if_no_peer_cert", _boolean,
            "with verify_peer: refuse clients that present no certificate"),
    Setting("auth_mechanisms", "auth_mechanisms", _mechanisms,
            "SASL mechanisms offered: PLAIN, AMQPLAIN, and EXTERNAL (the user named by the "
            "client's TLS certificate; offered on AMQPS only)"),
    Setting("ssl_cert_login_from", "ssl_cert_login_from",
            _choice("distinguished_name", "common_name"),
            "what of the certificate EXTERNAL takes as the user name: distinguished_name "
            "(\"CN=app,O=Example\") or common_name"),
    Setting("management_host", "management.bind", _addresses,
            "addresses the management HTTP listener binds", flag="--management-bind",
            env="WARREN_MANAGEMENT_BIND"),
    Setting("management_port", "management.port", _PORT, "HTTP management API and /metrics port"),
    Setting("management_certfile", "management.certfile", _existing_file,
            "PEM certificate: the management port serves HTTPS when set"),
    Setting("management_keyfile", "management.keyfile", _existing_file,
            "PEM private key of the management certificate"),
    Setting("collect_statistics_interval", "management.collect_statistics_interval",
            _integer(100, 3_600_000), "milliseconds between the samples that the management "
            "API's message rates are computed from"),
    Setting("rates_mode", "management.rates_mode", _rates_mode,
            "the management API's message rates: basic (RabbitMQ's detailed and none are "
            "refused)"),
    Setting("data_dir", "data_dir", _path, "directory for persistent data"),
    Setting("load_definitions", "load_definitions", _existing_file,
            "a RabbitMQ definitions JSON file (users, vhosts, permissions, topic permissions, "
            "policies, exchanges, queues, bindings) to load at start"),
    Setting("default_user", "default_user", _text, "user created on first start"),
    Setting("default_pass", "default_pass", _text, "password of the default user"),
    Setting("default_vhost", "default_vhost", _text, "vhost created on first start"),
    Setting("loopback_users", "loopback_users", _names,
            "users who may only connect from loopback (comma-separated in a flag or variable; "
            "an empty list lifts the restriction)"),
    Setting("frame_max", "limits.frame_max", _integer(4096, 2**32 - 1),
            "largest frame offered to clients, in bytes"),
    Setting("channel_max", "limits.channel_max", _integer(1, 65535),
            "most channels per connection offered to clients"),
    Setting("heartbeat", "limits.heartbeat", _integer(0, 65535),
            "heartbeat interval offered to clients, in seconds (0: none)"),
    Setting("max_connections", "limits.max_connections", _integer(0, 2**31 - 1),
            "most client connections at once (0: no limit)"),
    Setting("max_message_size", "limits.max_message_size", _integer(1, 512 * 1024 * 1024),
            "largest message body accepted, in bytes"),
    Setting("memory_high_watermark", "alarms.memory_high_watermark", _fraction,
            "memory alarm threshold as a fraction of RAM (or of the container's limit)"),
    Setting("memory_high_watermark_absolute", "alarms.memory_high_watermark_absolute", parse_size,
            "memory alarm threshold in bytes (\"2GiB\"); wins over the fraction"),
    Setting("memory_high_watermark_paging_ratio", "storage.memory_high_watermark_paging_ratio",
            _ratio, "share of the memory high watermark above which transient backlogs page "
            "out to data_dir/transient (RabbitMQ's vm_memory_high_watermark_paging_ratio; 0: "
            "always; above 1: not before the memory alarm)"),
    Setting("disk_free_limit", "alarms.disk_free_limit", parse_size,
            "disk alarm when the data dir's file system has less free space (\"50MB\")"),
    Setting("log_level", "log.level", _choice("debug", "info", "warning", "error"),
            "log verbosity: debug, info, warning or error"),
    Setting("log_file", "log.file", _path, "append the log to this file instead of stderr"),
    Setting("segment_size", "storage.segment_size", parse_size,
            "size at which a log segment is closed and a new one started"),
    Setting("resident_head", "storage.resident_head", _integer(1, 2**31 - 1),
            "messages at the head of a queue kept whole in memory; one arriving behind them is "
            "kept as a compact row, its body on disk (in the log, or in data_dir/transient)"),
    Setting("page_out_after", "storage.page_out_after", _integer(0, 3_600_000),
            "milliseconds a message other than a persistent one of a durable queue waits "
            "behind the resident head before its body goes to data_dir/transient"),
    Setting("cluster_etcd", "cluster.etcd_endpoints", _endpoints,
            "etcd endpoints HOST:PORT[,HOST:PORT...]: run as a node of a cluster (unset: a single "
            "node)", flag="--cluster-etcd"),
    Setting("node_name", "cluster.node_name", _node_name,
            "this node's name in the cluster, unique in it (default: warren@HOSTNAME)"),
    Setting("cluster_name", "cluster.name", _node_name,
            "the cluster's name: its keys in etcd live under /warren/NAME/"),
    Setting("advertise_host", "cluster.advertise_host", _text,
            "the address other nodes reach this node's AMQP, HTTP and replication ports at"),
    Setting("replication_port", "cluster.replication_port", _PORT,
            "port the leader serves replication on (followers connect to it)"),
    Setting("cluster_secret", "cluster.secret", _text,
            "shared secret the nodes of a cluster authenticate each other with (required in a "
            "cluster)"),
    Setting("cluster_size", "cluster.size", _integer(1, 101),
            "the number of nodes of the cluster; min_in_sync's default is a majority of them"),
    Setting("min_in_sync", "cluster.min_in_sync", _integer(0, 100),
            "followers that must have fsynced a record before it is confirmed (by default "
            "cluster.size // 2: with the leader, a majority of all the nodes)",
            default="cluster.size // 2"),
    Setting("lease_ttl", "cluster.lease_ttl", _integer(2, 60),
            "seconds of the nodes' etcd leases: a dead leader is replaced after about this long"),
    Setting("replication_timeout", "cluster.replication_timeout", _integer(100, 600_000),
            "milliseconds without an acknowledgement after which a follower leaves the "
            "in-sync set"),
]

_DEFAULTS = Config()


def _default_text(setting: Setting) -> str:
    if setting.default:
        return setting.default
    value = getattr(_DEFAULTS, setting.field)
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warren",
        description="Warren: an AMQP 0-9-1 message broker compatible with RabbitMQ clients.",
        epilog="Every setting can also be given as an environment variable or in the config "
        "file, under the key shown in brackets. Flags win over the environment, which wins over "
        "the file. `warren ctl --help` lists the admin commands.",
    )
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a warren.toml file ($WARREN_CONFIG)")
    for setting in SETTINGS:
        parser.add_argument(
            setting.flag_name, dest=setting.field, default=None,
            metavar=setting.key.rsplit(".", 1)[-1].upper(),
            help=f"{setting.help} (default {_default_text(setting)}; ${setting.env_name}; "
            f"[{setting.key}])".replace("%", "%%"),
        )
    return parser


def _read_file(path: Path) -> dict[str, Any]:
    """The settings in a warren.toml, by dotted key; unknown keys are an error."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    known = {setting.key for setting in SETTINGS}
    values: dict[str, Any] = {}

    def flatten(table: dict[str, Any], prefix: str) -> None:
        for name, value in table.items():
            key = prefix + name
            if isinstance(value, dict) and key not in known:
                flatten(value, key + ".")
            elif key in known:
                values[key] = value
            else:
                raise ConfigError(f"{path}: unknown setting '{key}'")

    flatten(document, "")
    return values


def resolve(args: argparse.Namespace, env: dict[str, str]) -> Config:
    config_path = args.config or (Path(env["WARREN_CONFIG"]) if env.get("WARREN_CONFIG") else None)
    from_file = _read_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        flag_value = getattr(args, setting.field)
        if flag_value is not None:
            raw, source = flag_value, setting.flag_name
        elif setting.env_name in env:
            raw, source = env[setting.env_name], f"${setting.env_name}"
        elif setting.key in from_file:
            raw, source = from_file[setting.key], f"'{setting.key}' in {config_path}"
        else:
            continue
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from error
    config = Config(**values, config_file=config_path.resolve() if config_path else None)
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    pairs = [("amqps.certfile", config.amqps_certfile, "amqps.keyfile", config.amqps_keyfile),
             ("management.certfile", config.management_certfile,
              "management.keyfile", config.management_keyfile)]
    for key, value, other_key, other in pairs:
        if (value is None) != (other is None):
            given, missing = (key, other_key) if value is not None else (other_key, key)
            raise ConfigError(f"'{given}' is set but '{missing}' is not: both are needed for TLS")
    if "EXTERNAL" in config.auth_mechanisms and not config.amqps_verify_peer:
        # as RabbitMQ advises: an unverified certificate must not name a user
        raise ConfigError("'auth_mechanisms' has EXTERNAL: it needs 'amqps.verify_peer = true'")
    if config.amqps_verify_peer and config.amqps_cacertfile is None:
        raise ConfigError("'amqps.verify_peer' needs 'amqps.cacertfile' to verify against")
    if config.clustered and not config.cluster_secret:
        raise ConfigError("'cluster.etcd_endpoints' is set but 'cluster.secret' is not: the "
                          "nodes of a cluster authenticate each other with it")
    ports = [("amqp.port", config.port), ("management.port", config.management_port)]
    if config.clustered:
        ports.append(("cluster.replication_port", config.replication_port))
    if config.amqps_enabled:
        ports.append(("amqps.port", config.amqps_port))
    seen: dict[int, str] = {}
    for key, port in ports:
        if port in seen:
            raise ConfigError(f"'{key}' and '{seen[port]}' are both {port}")
        seen[port] = key
    if config.clustered and config.required_in_sync >= config.cluster_size:
        raise ConfigError(f"'cluster.min_in_sync' is {config.required_in_sync} but "
                          f"'cluster.size' is {config.cluster_size}: the leader and "
                          f"{config.required_in_sync} followers need more nodes than that, "
                          "nothing would ever be confirmed")


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Resolve the Config, or print one line naming the bad setting and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return resolve(args, dict(os.environ) if env is None else env)
    except ConfigError as error:
        parser.exit(2, f"warren: configuration error: {error}\n")


def settings_table() -> str:
    """The README's table of settings, generated so it cannot drift from the code."""
    rows = ["| warren.toml | flag | environment | default | meaning |",
            "|---|---|---|---|---|"]
    for setting in SETTINGS:
        rows.append(f"| `{setting.key}` | `{setting.flag_name}` | `{setting.env_name}` | "
                    f"{_default_text(setting)} | {setting.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(settings_table() + "\n")
