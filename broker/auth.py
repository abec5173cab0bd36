"""Users, password hashes (RabbitMQ's salted SHA-256, so exported hashes import unchanged) and
per-vhost configure/write/read permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from broker.patterns import compile_pattern

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

    def add_user(self, user: User) -> None:
        self.users[user.name] = user

    def set_permissions(self, user: str, vhost: str, permission: Permission) -> None:
        self.permissions[(user, vhost)] = permission

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
