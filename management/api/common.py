"""What every API handler needs: RabbitMQ's error bodies (and, in `refusal`, the one place the
broker core's refusals become HTTP answers), JSON responses, the vhost in a path, and list
pagination, sorting and column selection."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from aiohttp import web

from broker.auth import User
from broker.errors import BrokerError
from broker.node import Node
from broker.nodename import node_name
from broker.tracing import Origin
from broker.vhost import VirtualHost
from management import jsontext, local_admin
from management.history import RangeError, ranges
from protocol.errors import named_error

# RabbitMQ 3.10 reads a request body in one chunk of cowboy's 8,000,000 bytes and refuses a
# longer one with 400 "Exceeded HTTP request body size limit" (max_http_body_size, 10 MB, is
# never reached), so a definitions file of up to ~8 MB imports.
MAX_BODY_SIZE = 8_000_000
MAX_NAME_BYTES = 255  # an AMQP shortstr
NODE_KEY = web.AppKey("node", Node)
USER = web.AppKey("user", User)  # the authenticated user of a request
# The acting user of a request made with the local administration credential (auth.py)
LOCAL_ADMIN = User(local_admin.IDENTITY, "", ["administrator"])


def node_of(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def trace_origin(request: web.Request) -> Origin:
    """Who the firehose names for the API's publishes and gets: RabbitMQ's API makes them on
    channel 1 of an internal connection named after an Erlang process; here, the node's."""
    return Origin(f"<{node_name()}.management>", 1, request[USER].name)


def error(status: int, error_name: str, reason: Any) -> web.HTTPException:
    """An HTTP error with RabbitMQ's {"error": ..., "reason": ...} body."""
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 405: web.HTTPMethodNotAllowed,
           500: web.HTTPInternalServerError}.get(status, web.HTTPBadRequest)
    # compact, and without a charset parameter, as RabbitMQ writes it
    body = json.dumps({"error": error_name, "reason": reason}, separators=(",", ":")).encode()
    if cls is web.HTTPMethodNotAllowed:
        return web.HTTPMethodNotAllowed("", [], body=body, content_type="application/json")
    return cls(body=body, content_type="application/json")


# The order in which RabbitMQ's resources list their methods in a 405's `allow` header.
_METHOD_ORDER = ("HEAD", "GET", "PUT", "POST", "DELETE", "OPTIONS")


def method_not_allowed(method: str, allowed: set[str]) -> web.HTTPException:
    """RabbitMQ's 405: an empty body and `allow` listing the path's methods, HEAD with GET
    and always OPTIONS (`HEAD, GET, OPTIONS` for /api/overview)."""
    methods = sorted(set(allowed) | {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set()),
                     key=_METHOD_ORDER.index)
    answer = web.HTTPMethodNotAllowed(method, methods, body=b"")
    answer.headers["Allow"] = ", ".join(methods)
    return answer


def refusal(
    failure: BrokerError,
    form: Literal["text", "reply", "import", "amqp", "publish"] = "text",
) -> web.HTTPException:
    """A refusal of the broker core as RabbitMQ's API shows it: a 400 whose reason is the
    text ("text": declare, delete), the AMQP reply text ("reply": a binding), the AMQP error of
    an import ("import": definitions), or reply code and text, access refused being a 401 with
    the reply text ("amqp": the aliveness test and the get, which RabbitMQ makes over AMQP) or
    a 400 like the others ("publish")."""
    if form == "text":
        return bad_request(failure.text)
    amqp = named_error(failure.kind, failure.text)
    if form == "reply":
        return bad_request(amqp.reply_text)
    if form == "import":
        return error(400, "bad_request",
                     ["amqp_error", failure.kind, erlang_chars(failure.text), "none"])
    if form == "amqp" and failure.kind == "access_refused":
        return error(401, "not_authorised", amqp.reply_text)
    return bad_request(f"{amqp.reply_code} {amqp.reply_text}")


def require_permission(request: web.Request, vhost: VirtualHost, kind: str,
                       resource_kind: str, name: str) -> None:
    """The core's permission check for the request's user (RabbitMQ's API acts as that user):
    `kind` (configure, write, read) on the named queue or exchange, else RabbitMQ's 401.
    The local administrator is not limited by permissions, as rabbitmqctl is not."""
    if is_local_admin(request):
        return
    try:
        vhost.check_permission(request[USER], kind, resource_kind, name)
    except BrokerError:
        raise access_refused() from None


def is_local_admin(request: web.Request) -> bool:
    return request[USER] is LOCAL_ADMIN


def not_found() -> web.HTTPException:
    return error(404, "Object Not Found", "Not Found")


def user_and_vhost_of(request: web.Request) -> tuple[str | None, str | None]:
    """The user and vhost a /api/users/{user}/... or /api/vhosts/{vhost}/... path names
    (None for the one it does not name); 404 when a named one does not exist."""
    node = node_of(request)
    user, vhost = request.match_info.get("user"), request.match_info.get("vhost")
    if (user is not None and user not in node.access.users) or (
        vhost is not None and vhost not in node.vhosts
    ):
        raise not_found()
    return user, vhost


def bad_request(reason: str) -> web.HTTPException:
    return error(400, "bad_request", reason)


def erlang_chars(text: str) -> list[int]:
    """A string as RabbitMQ's JSON shows an Erlang char list: the list of its code points."""
    return [ord(char) for char in text]


def body_too_large() -> web.HTTPException:
    return bad_request("Exceeded HTTP request body size limit")


def check_name_length(kind: str, name: str) -> None:
    """RabbitMQ's 400 for a queue name longer than an AMQP shortstr. Warren refuses the same
    of exchanges, vhosts and users (RabbitMQ takes those over HTTP, but AMQP cannot name them:
    exchange.declare, basic.deliver, connection.open and user_id carry shortstrs)."""
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise bad_request(f"{kind} should be less than 255 bytes, actually was {size}\n")


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return jsontext.dumps(value, _json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def sees_every_vhost(request: web.Request) -> bool:
    """Administrators and monitoring users see all; other management users only the vhosts
    they have permissions in (as in RabbitMQ)."""
    return bool({"administrator", "monitoring"} & set(request[USER].tags))


def may_use_vhost(request: web.Request, vhost: str) -> bool:
    if sees_every_vhost(request):
        return True
    return node_of(request).access.permission(request[USER].name, vhost) is not None


def vhost_of(request: web.Request) -> VirtualHost:
    vhost = node_of(request).vhosts.get(request.match_info["vhost"])
    if vhost is None:
        raise not_found()
    if not may_use_vhost(request, vhost.name):
        raise error(401, "not_authorised", "User not authorised to access virtual host")
    return vhost


def vhost_for_write(request: web.Request) -> VirtualHost:
    """The vhost of a PUT/POST: a missing one is RabbitMQ's 404 vhost_not_found."""
    vhost = node_of(request).vhosts.get(request.match_info["vhost"])
    if vhost is None:
        raise error(404, "not_found", "vhost_not_found")
    if not may_use_vhost(request, vhost.name):
        raise error(401, "not_authorised", "User not authorised to access virtual host")
    return vhost


Ranges = dict[str, tuple[int, int]]  # the sample ranges a request asks for, by group


def requested_ranges(request: web.Request, error_name: str = "bad_request") -> Ranges:
    """The `lengths_*`, `msg_rates_*` and `data_rates_*` ranges of the query, or RabbitMQ's
    400 for one it refuses (named `invalid_range_parameters` by its lists of queues,
    exchanges and vhosts, `bad_request` elsewhere)."""
    try:
        return ranges(request.query)
    except RangeError as refused:
        raise error(400, error_name, str(refused)) from None


def require_keys(body: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise error(400, "bad_request", ["not_boolean", value])  # type: ignore[arg-type]


def access_refused() -> web.HTTPException:
    return error(401, "not_authorised", "Access refused.")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or RabbitMQ's 400."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise bad_request("not_json") from None
    if not isinstance(body, dict):
        raise bad_request("not_json")
    return body


def listing(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    """A list endpoint's answer with RabbitMQ's sort, sort_reverse, columns and pagination."""
    query = request.query
    if not sees_every_vhost(request):
        items = [item for item in items
                 if may_use_vhost(request, item.get("vhost", item.get("name", "")))]
    sort = query.get("sort", "name")  # RabbitMQ lists by name unless told otherwise
    if sort:
        items = sorted(items, key=lambda item: _sort_key(_path(item, sort)),
                       reverse=query.get("sort_reverse") == "true")
    name_filter = query.get("name")
    total = len(items)
    if name_filter:
        if query.get("use_regex") == "true":
            try:
                pattern = re.compile(name_filter)
            except re.error:
                raise bad_request("invalid regular expression") from None
            items = [item for item in items if pattern.search(str(item.get("name", "")))]
        else:
            items = [item for item in items if name_filter in str(item.get("name", ""))]
    columns = query.get("columns")
    if columns:
        items = [_select(item, columns.split(",")) for item in items]
    if "page" not in query:
        return json_response(items)
    try:
        page = int(query["page"])
        page_size = int(query.get("page_size", 100))
    except ValueError:
        raise bad_request("Pagination parameters are invalid") from None
    if page < 1 or not 1 <= page_size <= 500:
        raise error(400, "invalid_pagination_parameters",
                    f"Invalid pagination parameters: page number {page}, page size {page_size}")
    page_count = math.ceil(len(items) / page_size)
    if page > page_count and items:
        raise error(400, "page_out_of_range",
                    f"Page out of range, page: {page} page size: {page_size}, len: {len(items)}")
    chunk = items[(page - 1) * page_size : page * page_size]
    return json_response({
        "filtered_count": len(items), "item_count": len(chunk), "items": chunk,
        "page": page, "page_count": page_count, "page_size": page_size,
        "total_count": total,
    })


def _path(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _sort_key(value: Any) -> tuple:
    return (value is None, str(type(value)), value if value is not None else 0)


def _select(item: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    selected: dict[str, Any] = {}
    for column in columns:
        value = _path(item, column)
        target = selected
        parts = column.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return selected
