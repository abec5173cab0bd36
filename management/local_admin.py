"""Local administration: the credential `warren ctl` and the Docker health check use beside the
broker, as rabbitmqctl uses the node's Erlang cookie, so that they work without any user's
password (a container started without WARREN_DEFAULT_*, the default user deleted or changed).

At every start the broker writes a fresh random secret to `<data_dir>/local-admin.secret`,
readable only by the broker's own OS user (mode 0600). A client that can read it sends
`Authorization: Warren-Local <secret>`; the management API takes that as an administrator only
from a loopback address, so the secret is never good from another machine, and a client sends
it only to a loopback URL. No password is stored anywhere for this.

In a cluster, a follower's management port passes requests through to the leader: the follower
checks its own local secret and passes the request on with `X-Warren-Local-Admin`, a signature
of the node, the time, the method, the path and the body made with the cluster secret (which
only the nodes know), which the leader accepts for `FORWARD_WINDOW` seconds. Someone who reads
the traffic between the nodes (which carries AMQP and replication in clear as well) could
replay that same request within the window, and nothing else.

Standard library only: `warren ctl` imports this without the broker's dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import urllib.parse
from pathlib import Path

SECRET_FILE = "local-admin.secret"
SCHEME = "Warren-Local"
FORWARD_HEADER = "X-Warren-Local-Admin"
FORWARD_WINDOW = 30.0  # seconds a follower's signature stays good (clocks of the nodes agree)
IDENTITY = "local administrator"  # the acting user's name in logs; no user by this name exists
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def secret_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SECRET_FILE


def write_secret(data_dir: Path | str) -> str:
    """A new secret in the data dir (mode 0600, replacing the last start's); returns it."""
    secret = secrets.token_hex(32)
    path = secret_path(data_dir)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)  # O_EXCL below: never write into someone else's file
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secret.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return secret


def read_secret(data_dir: Path | str) -> str | None:
    """The running broker's secret, or None when the file is missing or not readable."""
    try:
        return secret_path(data_dir).read_text().strip() or None
    except OSError:
        return None


def header_value(secret: str) -> str:
    return f"{SCHEME} {secret}"


def is_local_url(url: str) -> bool:
    """Whether `url` points at this machine: the only place the secret may be sent to."""
    return (urllib.parse.urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def is_local_header(authorization: str | None) -> bool:
    return authorization is not None and authorization.startswith(SCHEME + " ")


def accepts(authorization: str | None, secret: str | None, loopback: bool) -> bool:
    """Whether an Authorization header is this node's local credential, from loopback."""
    if not loopback or secret is None or not is_local_header(authorization):
        return False
    return hmac.compare_digest(authorization[len(SCHEME) + 1:].strip().encode(),
                               secret.encode())


def _signature(cluster_secret: str, node: str, stamp: str, method: str, path: str,
               body: bytes) -> str:
    message = "\0".join((node, stamp, method.upper(), path,
                         hashlib.sha256(body).hexdigest())).encode()
    return hmac.new(cluster_secret.encode(), b"local-admin\0" + message,
                    hashlib.sha256).hexdigest()


def sign_forward(cluster_secret: str, node: str, method: str, path: str, body: bytes,
                 now: float | None = None) -> str:
    """The X-Warren-Local-Admin value a follower passes a local administrator's request on
    with (`path` with its query string)."""
    stamp = str(int(time.time() if now is None else now))
    return f"{node};{stamp};{_signature(cluster_secret, node, stamp, method, path, body)}"


def verify_forward(value: str | None, cluster_secret: str | None, method: str, path: str,
                   body: bytes, now: float | None = None) -> bool:
    if not value or not cluster_secret:
        return False
    node, _, rest = value.partition(";")
    stamp, _, signature = rest.partition(";")
    try:
        age = (time.time() if now is None else now) - int(stamp)
    except ValueError:
        return False
    if abs(age) > FORWARD_WINDOW:
        return False
    expected = _signature(cluster_secret, node, stamp, method, path, body)
    return hmac.compare_digest(expected.encode(), signature.encode())
