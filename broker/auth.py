"""Users, password hashes (RabbitMQ's salted SHA-256, so exported hashes import unchanged),
per-vhost configure/write/read permissions and per-exchange topic permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from broker.patterns import InvalidPattern, compile_pattern

SHA256_ALGORITHM = "rabbit_password_hashing_sha256"


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def check_password(password: str, password_hash: str) -> bool:
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
        return False
    if len(raw) < 5:
        return False
    return hmac.compare_digest(hash_password(password, raw[:4]), password_hash)


@dataclass
class Permission:
    configure: str
    write: str
    read: str

    def __post_init__(self) -> None:
        """Raises broker.patterns.InvalidPattern for a pattern that does not compile."""
        self._compiled = {
            kind: compile_pattern(pattern)
            for kind, pattern in (("configure", self.configure), ("write", self.write),
                                  ("read", self.read))
        }

    def allows(self, kind: str, name: str) -> bool:
        pattern = self._compiled[kind]
        # RabbitMQ: an empty pattern matches nothing, otherwise an unanchored regex search.
        return bool(pattern.pattern) and pattern.search(name) is not None


@dataclass
class TopicPermission:
    """What routing keys `user` may publish with (write) and bind with (read) on the topic
    exchange `exchange` of `vhost`, as RabbitMQ's internal backend checks them: an unanchored
    regex search, an empty pattern meaning "^$", and "{username}" and "{vhost}" in a pattern
    replaced by the user's and vhost's names before matching (client_id is MQTT's only)."""

    user: str
    vhost: str
    exchange: str
    write: str
    read: str

    def __post_init__(self) -> None:
        """Raises broker.patterns.InvalidPattern for a pattern that does not compile."""
        self._compiled: dict[str, re.Pattern | None] = {}
        for kind, pattern in (("write", self.write), ("read", self.read)):
            compile_pattern(pattern)  # the pattern as given must compile, as in RabbitMQ
            expanded = (pattern or "^$").replace("{username}", self.user)
            expanded = expanded.replace("{vhost}", self.vhost)
            try:
                self._compiled[kind] = compile_pattern(expanded)
            except InvalidPattern:  # a name with regex syntax in it: nothing matches
                self._compiled[kind] = None

    def allows(self, kind: str, routing_key: str) -> bool:
        pattern = self._compiled[kind]
        return pattern is not None and pattern.search(routing_key) is not None

    def as_definition(self) -> dict[str, str]:
        """As RabbitMQ's API and definitions export show it."""
        return {"user": self.user, "vhost": self.vhost, "exchange": self.exchange,
                "write": self.write, "read": self.read}


def is_loopback(host: str) -> bool:
    """A peer address on this machine: where loopback_users may log in from."""
    return host.startswith(("127.", "::ffff:127.")) or host in ("::1", "localhost")

@dataclass
class User:
    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)

    def check_password(self, password: str) -> bool:
        return check_password(password, self.password_hash)


class AccessControl:
    """The users of the node and what each may do in each vhost."""

    def __init__(self, loopback_users: tuple[str, ...] = ("guest",)) -> None:
        self.loopback_users = frozenset(loopback_users)  # may log in from loopback only
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        # (user, vhost, exchange) -> its topic permission; none for a topic exchange: all allowed
        self.topic_permissions: dict[tuple[str, str, str], TopicPermission] = {}

    def add_user(self, user: User) -> None:
        self.users[user.name] = user

    def set_permissions(self, user: str, vhost: str, permission: Permission) -> None:
        self.permissions[(user, vhost)] = permission

    def set_topic_permission(self, permission: TopicPermission) -> None:
        self.topic_permissions[
            (permission.user, permission.vhost, permission.exchange)] = permission

    def topic_permissions_of(self, user: str | None = None,
                             vhost: str | None = None) -> list[TopicPermission]:
        """The topic permissions of a user and/or vhost (all of them for None)."""
        return [permission for permission in self.topic_permissions.values()
                if (user is None or permission.user == user)
                and (vhost is None or permission.vhost == vhost)]

    def clear_topic_permissions(self, user: str | None = None, vhost: str | None = None) -> int:
        """Forget the topic permissions of a user and/or vhost; returns how many there were."""
        gone = self.topic_permissions_of(user, vhost)
        for permission in gone:
            del self.topic_permissions[(permission.user, permission.vhost, permission.exchange)]
        return len(gone)

    def authenticate(self, username: str, password: str, loopback: bool) -> User | None:
        user = self.users.get(username)
        if user is None or not user.check_password(password):
            return None
        if not loopback and username in self.loopback_users:
            return None
        return user

    def authenticate_external(self, username: str, loopback: bool) -> User | None:
        """A user named by a verified TLS certificate: no password to check, as RabbitMQ's
        internal backend takes a login without one."""
        user = self.users.get(username) if username else None
        if user is None or (not loopback and username in self.loopback_users):
            return None
        return user

    def permission(self, user: str, vhost: str) -> Permission | None:
        return self.permissions.get((user, vhost))
