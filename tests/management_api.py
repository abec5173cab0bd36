"""Helpers for the management HTTP API tests: a tiny blocking HTTP client (urllib), path
quoting, and polling for values that RabbitMQ only reports after a statistics delay.

The client never raises on HTTP error statuses: every call returns a `Response` with the
status, headers and raw body, so tests can assert on 4xx answers exactly like on 2xx ones.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GUEST = ("guest", "guest")
HTTP_TIMEOUT = 10.0
# RabbitMQ fills queue/connection/channel statistics from a stats database that lags behind
# (about 1-3 s at collect_statistics_interval = 500 ms); Warren may answer at once.
STATS_TIMEOUT = 15.0

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}
REALM = 'Basic realm="RabbitMQ Management"'


def q(name: str) -> str:
    """One path segment: a vhost, queue, exchange or user name, fully percent-encoded."""
    return urllib.parse.quote(name, safe="")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class Api:
    """Blocking client for one broker's management port (`broker.management_port`)."""

    def __init__(self, host: str, port: int, auth: tuple[str, str] | None = GUEST) -> None:
        self.base = f"http://{host}:{port}"
        self.auth = auth

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        auth: tuple[str, str] | None | str = "default",
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send `body` as JSON (or `raw` bytes as application/json); return the response."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"content-type": "application/json"} if data is not None else {}
        credentials = self.auth if auth == "default" else auth
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            all_headers["authorization"] = f"Basic {token}"
        all_headers.update(headers or {})
        if method in ("PUT", "POST") and data is None:
            data = b""
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
                return Response(answer.status, _lower(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, _lower(error.headers), error.read())

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("PUT", path, {} if body is None else body, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    def ok_json(self, path: str) -> Any:
        """GET `path`, require 200, return the decoded JSON."""
        answer = self.get(path)
        assert answer.status == 200, (path, answer)
        return answer.json()

    # Conveniences for setting up objects (each asserts success).

    def create_queue(self, vhost: str, name: str, **body) -> None:
        answer = self.put(f"/api/queues/{q(vhost)}/{q(name)}", body)
        assert answer.status in (201, 204), answer

    def create_exchange(self, vhost: str, name: str, type_: str = "direct", **body) -> None:
        answer = self.put(f"/api/exchanges/{q(vhost)}/{q(name)}", {"type": type_, **body})
        assert answer.status in (201, 204), answer

    def publish(self, vhost: str, exchange: str, routing_key: str, payload: str,
                properties: dict | None = None, encoding: str = "string") -> bool:
        answer = self.post(
            f"/api/exchanges/{q(vhost)}/{q(exchange)}/publish",
            {"properties": properties or {}, "routing_key": routing_key,
             "payload": payload, "payload_encoding": encoding},
        )
        assert answer.status == 200, answer
        return answer.json()["routed"]

    def get_messages(self, vhost: str, queue: str, count: int = 10,
                     ackmode: str = "ack_requeue_false", encoding: str = "auto",
                     **extra) -> list[dict]:
        answer = self.post(
            f"/api/queues/{q(vhost)}/{q(queue)}/get",
            {"count": count, "ackmode": ackmode, "encoding": encoding, **extra},
        )
        assert answer.status == 200, answer
        return answer.json()


def get_from(source: str, host: str, port: int, path: str,
             auth: tuple[str, str] = GUEST, headers: dict[str, str] | None = None) -> Response:
    """GET `path` from a client socket bound to the local address `source` (the loopback rules
    judge the client's address); urllib cannot choose it, http.client can."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    connection = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT,
                                            source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"authorization": f"Basic {token}",
                                                 **(headers or {})})
        answer = connection.getresponse()
        return Response(answer.status, _lower(answer.headers), answer.read())
    finally:
        connection.close()


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def eventually(fetch: Callable[[], Any], check: Callable[[Any], bool],
               timeout: float = STATS_TIMEOUT, interval: float = 0.1) -> Any:
    """Call `fetch` until `check(value)` holds; return that value, or fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        try:
            if check(value):
                return value
        except (KeyError, TypeError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)


def wait_for_queue_field(api: Api, vhost: str, name: str, **expected) -> dict:
    """Poll GET /api/queues/{vhost}/{name} until every `field=value` of `expected` holds."""
    return eventually(
        lambda: api.ok_json(f"/api/queues/{q(vhost)}/{q(name)}"),
        lambda queue: all(queue.get(key, object()) == value for key, value in expected.items()),
    )
