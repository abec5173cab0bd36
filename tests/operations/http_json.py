"""A tiny HTTP(S) JSON client for the operations tests (basic auth as guest by default)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from typing import Any


def _request(url: str, method: str, body: Any, context: ssl.SSLContext | None,
             user: tuple[str, str]) -> Any:
    request = urllib.request.Request(url, method=method, headers={
        "Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode(),
        "Content-Type": "application/json",
    }, data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        data = answer.read()
    return json.loads(data) if data else None


def get_json(url: str, context: ssl.SSLContext | None = None,
             user: tuple[str, str] = ("guest", "guest")) -> Any:
    return _request(url, "GET", None, context, user)


def put_json(url: str, body: Any, user: tuple[str, str] = ("guest", "guest")) -> Any:
    return _request(url, "PUT", body, None, user)
