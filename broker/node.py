"""The broker node: its vhosts, users, open connections, direct reply-to registry and the
plain message counters that /metrics reads at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.auth import AccessControl, Permission, User, hash_password
from broker.vhost import VirtualHost

if TYPE_CHECKING:
    from broker.channel import Channel
    from broker.config import Config
    from broker.connection import Connection


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.access = AccessControl()
        self.vhosts: dict[str, VirtualHost] = {}
        self.connections: set[Connection] = set()
        self.reply_channels: dict[str, Channel] = {}
        self.messages_received = 0
        self.messages_routed = 0
        self.messages_unroutable = 0
        self.messages_delivered = 0
        self.messages_acknowledged = 0
        self.messages_confirmed = 0
        self._add_defaults()

    def _add_defaults(self) -> None:
        config = self.config
        self.add_vhost(config.default_vhost)
        self.access.add_user(User(
            config.default_user, hash_password(config.default_pass), ["administrator"],
            loopback_only=config.default_user == "guest",
        ))
        self.access.set_permissions(
            config.default_user, config.default_vhost, Permission(".*", ".*", ".*")
        )

    def add_vhost(self, name: str) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(name, self.access)
        return vhost
