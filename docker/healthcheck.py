"""Docker HEALTHCHECK for the Warren image: GET the broker's own health endpoint over loopback.

Exit 0 when /api/health/checks/alarms answers 200 with status "ok", 1 otherwise.
The port, HTTP or HTTPS and the data dir are resolved from the container's environment
(WARREN_* and WARREN_CONFIG) exactly as the broker resolves them. It authenticates with the
broker's local administration secret from the data dir (management/local_admin.py), so it
needs no user's password; where that file cannot be read, with the default user's credentials.
WARREN_HEALTHCHECK_URL replaces the whole URL (an https:// URL is not certificate-checked:
it is the container's own loopback).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

from broker.config import parse_args
from management import local_admin

DEFAULT_PATH = "/api/health/checks/alarms"


def check(env: dict[str, str], timeout: float = 4.0) -> tuple[bool, str]:
    """(healthy, one line saying why) for the broker this environment describes."""
    config = parse_args([], env)
    scheme = "https" if config.management_https else "http"
    url = (env.get("WARREN_HEALTHCHECK_URL")
           or f"{scheme}://127.0.0.1:{config.management_port}{DEFAULT_PATH}")
    secret = local_admin.read_secret(config.data_dir) if local_admin.is_local_url(url) else None
    if secret is not None:
        authorization = local_admin.header_value(secret)
    else:
        token = base64.b64encode(f"{config.default_user}:{config.default_pass}".encode())
        authorization = f"Basic {token.decode()}"
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return False, f"{url}: HTTP {error.code} {error.read()[:200]!r}"
    except (OSError, ValueError) as error:
        return False, f"{url}: {error}"
    status = body.get("status") if isinstance(body, dict) else None
    return status == "ok", f"{url}: {body}"


def main() -> int:
    healthy, detail = check(dict(os.environ))
    print(detail)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
