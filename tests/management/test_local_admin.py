"""Local administration (management/local_admin.py): `warren ctl` beside the broker needs no
user's password, as rabbitmqctl needs none beside a RabbitMQ node (it uses the node's cookie).
The broker writes a new random secret to its data dir (mode 0600) at every start; the API
takes it only from loopback and only with the right value."""

from __future__ import annotations

import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from management_api import Api

from management import local_admin

FIRST_USER = ("first-admin", "first-pw")


def ctl_beside(broker, *args: str) -> subprocess.CompletedProcess:
    """`warren ctl` as `docker exec` runs it: the broker's data dir and port from WARREN_*,
    no credentials anywhere in the environment."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WARREN_DEFAULT_", "WARREN_CTL_", "WARREN_MANAGEMENT_URL"))}
    env |= {"WARREN_DATA_DIR": str(broker.data_dir),
            "WARREN_MANAGEMENT_PORT": str(broker.management_port)}
    return subprocess.run([sys.executable, "-m", "broker", "ctl", *args], capture_output=True,
                          text=True, timeout=30, env=env)


def get_status(url: str, authorization: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as failure:
        return failure.code


def secret_of(broker) -> str:
    return local_admin.secret_path(broker.data_dir).read_text().strip()


@pytest.fixture
def no_guest(warren_factory):
    """A Warren whose only administrator is FIRST_USER (no guest user at all)."""
    user, password = FIRST_USER
    return warren_factory(env={"WARREN_DEFAULT_USER": user, "WARREN_DEFAULT_PASS": password})


def test_ctl_works_without_credentials_and_without_guest(no_guest):
    users = ctl_beside(no_guest, "list_users")
    assert users.returncode == 0, users.stderr
    names = [line.split("\t")[0] for line in users.stdout.splitlines()[1:]]
    assert FIRST_USER[0] in names and "guest" not in names
    # even with every administrator gone, as rabbitmqctl can still add one
    assert ctl_beside(no_guest, "delete_user", FIRST_USER[0]).returncode == 0
    added = ctl_beside(no_guest, "add_user", "second-admin", "pw2", "--tags", "administrator")
    assert added.returncode == 0, added.stderr
    assert ctl_beside(no_guest, "add_vhost", "made-locally").returncode == 0
    status = ctl_beside(no_guest, "cluster_status")
    assert status.returncode == 0 and status.stdout.startswith("Cluster status of"), status
    # rabbitmqctl's add_vhost grants no permission: the local administrator is not a user
    api = Api("127.0.0.1", no_guest.management_port, auth=("second-admin", "pw2"))
    assert api.ok_json("/api/vhosts/made-locally/permissions") == []
    assert "made-locally" in [vhost["name"] for vhost in api.ok_json("/api/vhosts")]


def test_secret_file_is_private_and_new_at_every_start(no_guest, warren_factory):
    path = local_admin.secret_path(no_guest.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = secret_of(no_guest)
    assert len(first) == 64 and int(first, 16) >= 0
    url = f"http://127.0.0.1:{no_guest.management_port}/api/overview"
    assert get_status(url, local_admin.header_value(first)) == 200
    assert get_status(url, local_admin.header_value(first[:-1] + "x")) == 401
    assert get_status(url, local_admin.header_value("")) == 401
    no_guest.process.terminate()
    no_guest.process.wait(timeout=10)
    again = warren_factory(extra_args=["--data-dir", str(no_guest.data_dir)])
    second = secret_of(no_guest)  # the same data dir
    assert second != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    url = f"http://127.0.0.1:{again.management_port}/api/overview"
    assert get_status(url, local_admin.header_value(first)) == 401
    assert get_status(url, local_admin.header_value(second)) == 200


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_secret_is_refused_from_a_non_loopback_address(no_guest):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    secret = local_admin.header_value(secret_of(no_guest))
    assert get_status(f"http://127.0.0.1:{no_guest.management_port}/api/overview", secret) == 200
    assert get_status(f"http://{address}:{no_guest.management_port}/api/overview", secret) == 401
    # ctl does not even send it to a non-loopback URL: the default user's basic auth instead
    seen: list[str | None] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.HTTPServer((address, 0), Recorder) as server:
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        result = ctl_beside(no_guest, "--url", f"http://{address}:{server.server_port}",
                            "list_users")
        thread.join(10)
    assert result.returncode == 1
    assert len(seen) == 1 and seen[0] is not None and seen[0].startswith("Basic "), seen


def test_a_forged_follower_signature_is_refused(no_guest):
    """A single node takes no X-Warren-Local-Admin at all (it has no cluster secret)."""
    value = local_admin.sign_forward("guessed", "node", "GET", "/api/overview", b"")
    request = urllib.request.Request(
        f"http://127.0.0.1:{no_guest.management_port}/api/overview",
        headers={local_admin.FORWARD_HEADER: value})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_explicit_credentials_win_over_the_secret(no_guest):
    result = ctl_beside(no_guest, "--user", "nobody", "--password", "x", "list_users")
    assert result.returncode == 1 and "Login failed" in result.stderr
    assert Path(local_admin.secret_path(no_guest.data_dir)).exists()


def test_a_stale_secret_is_refused_with_a_hint(no_guest, tmp_path):
    """A secret file of another (or an earlier) broker: 401, and ctl says which file it sent."""
    local_admin.write_secret(tmp_path)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WARREN_DEFAULT_", "WARREN_CTL_", "WARREN_MANAGEMENT_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--data-dir", str(tmp_path), "--url",
         f"http://localhost:{no_guest.management_port}", "list_users"],
        capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 1
    assert "Login failed" in result.stderr
    assert str(local_admin.secret_path(tmp_path)) in result.stderr
