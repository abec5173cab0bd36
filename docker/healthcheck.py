"""Docker HEALTHCHECK for the Warren image: GET the broker's own health endpoint over loopback.

Exit 0 when /api/health/checks/alarms (basic auth) answers 200 with status "ok", 1 otherwise.
Credentials come from WARREN_DEFAULT_USER / WARREN_DEFAULT_PASS (default guest/guest, which
may log in from loopback); the port from WARREN_MANAGEMENT_PORT (default 15672).
WARREN_HEALTHCHECK_URL replaces the whole URL (an https:// URL is not certificate-checked:
it is the container's own loopback). Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/api/health/checks/alarms"


def health_url(env: dict[str, str]) -> str:
    """The URL to check, from the container's environment."""
    if env.get("WARREN_HEALTHCHECK_URL"):
        return env["WARREN_HEALTHCHECK_URL"]
    port = env.get("WARREN_MANAGEMENT_PORT") or "15672"
    return f"http://127.0.0.1:{port}{DEFAULT_PATH}"


def check(env: dict[str, str], timeout: float = 4.0) -> tuple[bool, str]:
    """(healthy, one line saying why) for the broker this environment describes."""
    user = env.get("WARREN_DEFAULT_USER") or "guest"
    password = env.get("WARREN_DEFAULT_PASS") or "guest"
    url = health_url(env)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
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
