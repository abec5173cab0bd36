"""Command-line flags and environment variables, resolved into one Config."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Config:
    host: str = "0.0.0.0"
    port: int = 5672
    amqps_host: str = "0.0.0.0"
    amqps_port: int = 5671
    tls_certfile: Path | None = None  # the AMQPS listener runs only when a certificate is set
    tls_keyfile: Path | None = None
    tls_cacertfile: Path | None = None
    tls_verify_peer: bool = False
    tls_fail_if_no_peer_cert: bool = False
    management_host: str = "0.0.0.0"
    management_port: int = 15672
    management_certfile: Path | None = None  # HTTPS when set
    management_keyfile: Path | None = None
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
    disk_free_limit: int = 50_000_000  # bytes free on the data dir's file system
    segment_size: int = 64 * 1024 * 1024


def parse_args(argv: list[str] | None = None) -> Config:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="warren",
        description="Warren: an AMQP 0-9-1 message broker compatible with RabbitMQ clients.",
        epilog="`warren ctl --help` lists the admin commands (rabbitmqctl's, over the HTTP API). "
        "Environment: WARREN_DEFAULT_USER, WARREN_DEFAULT_PASS and WARREN_DEFAULT_VHOST "
        "replace the default guest/guest user and '/' vhost (guest may only connect from "
        "loopback, as in RabbitMQ).",
    )
    parser.add_argument("--bind", default=env.get("WARREN_BIND", "0.0.0.0"),
                        help="address to listen on (default: all interfaces; $WARREN_BIND)")
    parser.add_argument("--port", type=int, default=int(env.get("WARREN_PORT", 5672)),
                        help="AMQP port (default 5672; $WARREN_PORT)")
    parser.add_argument("--management-port", type=int,
                        default=int(env.get("WARREN_MANAGEMENT_PORT", 15672)),
                        help="HTTP management API and /metrics port (default 15672; "
                        "$WARREN_MANAGEMENT_PORT)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(env.get("WARREN_DATA_DIR", "data")),
                        help="directory for persistent data (default ./data; $WARREN_DATA_DIR)")
    parser.add_argument("--log-level", default=env.get("WARREN_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"],
                        help="log verbosity (default info; $WARREN_LOG_LEVEL)")
    parser.add_argument("--load-definitions", type=Path,
                        default=env.get("WARREN_LOAD_DEFINITIONS") or None,
                        help="a RabbitMQ definitions JSON file (users, vhosts, permissions, "
                        "exchanges, queues, bindings) to load at start ($WARREN_LOAD_DEFINITIONS)")
    parser.add_argument("--segment-size", type=int,
                        default=int(env.get("WARREN_SEGMENT_SIZE", 64 * 1024 * 1024)),
                        help="size in bytes at which a log segment is closed and a new one "
                        "started (default 64 MiB; $WARREN_SEGMENT_SIZE)")
    args = parser.parse_args(argv)
    return Config(
        host=args.bind,
        port=args.port,
        management_port=args.management_port,
        data_dir=args.data_dir,
        log_level=args.log_level,
        default_user=env.get("WARREN_DEFAULT_USER", "guest"),
        default_pass=env.get("WARREN_DEFAULT_PASS", "guest"),
        default_vhost=env.get("WARREN_DEFAULT_VHOST", "/"),
        load_definitions=Path(args.load_definitions) if args.load_definitions else None,
        segment_size=args.segment_size,
    )
