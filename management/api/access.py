"""/api/vhosts, /api/users, /api/permissions: who may do what where."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.auth import SHA256_ALGORITHM, Permission, User, hash_password
from broker.node import node_name
from broker.patterns import InvalidPattern
from broker.vhost import QUEUE_TYPES, VirtualHost
from management.api.common import (
    Ranges,
    bad_request,
    check_name_length,
    erlang_chars,
    error,
    is_local_admin,
    json_body,
    json_response,
    listing,
    node_of,
    not_found,
    requested_ranges,
    require_keys,
    user_and_vhost_of,
)
from management.auth import USER_KEY, require_tag
from management.rates import (
    CHANNEL_STATS,
    QUEUE_LENGTHS,
    RATES_KEY,
    VHOST,
    VHOST_OCTETS,
    VHOST_TRAFFIC,
    Rates,
    vhost_traffic,
)


def vhost_info(vhost: VirtualHost) -> dict[str, Any]:
    queues = vhost.queues.values()
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked_count for queue in queues)
    return {"name": vhost.name, "description": vhost.description, "tags": list(vhost.tags),
            "default_queue_type": vhost.default_queue_type or "undefined",
            "metadata": vhost.metadata, "tracing": vhost.tracing,
            "cluster_state": {node_name(): "running"},
            "messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked}


async def list_vhosts(request: web.Request) -> web.Response:
    ranges = requested_ranges(request, "invalid_range_parameters")
    node, rates = node_of(request), request.app[RATES_KEY]
    traffic = vhost_traffic(node)
    return listing(request, [_vhost_object(vhost, rates, ranges, traffic[vhost])
                             for vhost in node.vhosts.values()])


def _vhost_object(vhost: VirtualHost, rates: Rates, ranges: Ranges,
                  traffic: tuple[int, ...]) -> dict[str, Any]:
    """A vhost as RabbitMQ shows it: its description, its messages, ready and unacked with
    their `_details` and, once its connections moved them, their bytes and their channels'
    message_stats (open and closed ones). RabbitMQ 3.10.8 samples the bytes for a
    `data_rates_*` range, the message counts and message_stats for `msg_rates_*`, and checks
    a `lengths_*` range but answers no samples for it."""
    shown = {**vhost_info(vhost), **rates.figures(VHOST, vhost, QUEUE_LENGTHS, ranges)}
    shown.update(rates.message_stats(VHOST_TRAFFIC, vhost, VHOST_OCTETS, ranges, traffic))
    stats = rates.message_stats(VHOST_TRAFFIC, vhost, CHANNEL_STATS, ranges, traffic)
    if stats:
        shown["message_stats"] = stats
    return shown


async def show_vhost(request: web.Request) -> web.Response:
    node = node_of(request)
    vhost = node.vhosts.get(request.match_info["vhost"])
    if vhost is None:
        raise not_found()
    ranges = requested_ranges(request)
    return json_response(_vhost_object(vhost, request.app[RATES_KEY], ranges,
                                       vhost_traffic(node)[vhost]))


async def put_vhost(request: web.Request) -> web.Response:
    require_tag(request)
    body = await json_body(request)
    node = node_of(request)
    name = request.match_info["vhost"]
    check_name_length("vhost", name)
    queue_type = body.get("defaultqueuetype")  # RabbitMQ 3.10's key for default_queue_type
    if queue_type is not None and queue_type not in QUEUE_TYPES:
        raise bad_request("invalid_queue_type")
    tracing = _tracing_of(body)
    existed = name in node.vhosts
    vhost = node.add_vhost(name)
    if existed:  # as RabbitMQ 3.10.8: what the body leaves out is cleared; the type stays
        vhost.update_metadata(body.get("description", ""), body.get("tags", []))
    else:
        vhost.update_metadata(body.get("description"), body.get("tags"), queue_type)
    if not existed:
        # as RabbitMQ does: the creator gets full permissions on it (rabbitmqctl's add_vhost,
        # as the local administrator here, grants none: it is no user)
        if not is_local_admin(request):
            node.access.set_permissions(request[USER_KEY].name, name,
                                        Permission(".*", ".*", ".*"))
        node.definitions_changed()
    if tracing is not None:
        node.set_tracing(name, tracing)
    return web.Response(status=204 if existed else 201)


def _tracing_of(body: dict[str, Any]) -> bool | None:
    """The body's `tracing`, as RabbitMQ reads it: a boolean or "true"/"false"; None when the
    body has none (tracing stays as it is)."""
    if "tracing" not in body:
        return None
    value = body["tracing"]
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise error(400, "bad_request", ["not_boolean", value])


async def delete_vhost(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    name = request.match_info["vhost"]
    vhost = node.vhosts.get(name)
    if vhost is None:
        raise not_found()
    node.delete_vhost(vhost)
    return web.Response(status=204)


def user_info(user: User) -> dict[str, Any]:
    return {"name": user.name, "password_hash": user.password_hash,
            "hashing_algorithm": SHA256_ALGORITHM, "tags": list(user.tags), "limits": {}}


async def list_users(request: web.Request) -> web.Response:
    require_tag(request)
    return listing(request, [user_info(user) for user in node_of(request).access.users.values()])


async def show_user(request: web.Request) -> web.Response:
    require_tag(request)
    user = node_of(request).access.users.get(request.match_info["user"])
    if user is None:
        raise not_found()
    return json_response(user_info(user))


async def put_user(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    body = await json_body(request)
    name = request.match_info["user"]
    check_name_length("user", name)
    existing = node.access.users.get(name)
    if "tags" not in body:
        raise bad_request("tags_not_present")
    if "password" in body:
        password_hash = hash_password(str(body["password"]))
    elif "password_hash" in body:
        password_hash = str(body["password_hash"])
    else:
        password_hash = ""  # as in RabbitMQ: no password given clears it (no password login)
    tags = body.get("tags", "")
    if isinstance(tags, str):
        tags = [tag for tag in tags.replace(" ", ",").split(",") if tag]
    node.access.add_user(User(name, password_hash, list(tags)))
    node.definitions_changed()
    return web.Response(status=204 if existing else 201)


async def delete_user(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    name = request.match_info["user"]
    if node.access.users.pop(name, None) is None:
        raise not_found()
    for key in [key for key in node.access.permissions if key[0] == name]:
        del node.access.permissions[key]
    node.access.clear_topic_permissions(user=name)
    node.definitions_changed()
    return web.Response(status=204)


def permission_info(user: str, vhost: str, permission: Permission) -> dict[str, Any]:
    return {"user": user, "vhost": vhost, "configure": permission.configure,
            "write": permission.write, "read": permission.read}


async def list_permissions(request: web.Request) -> web.Response:
    require_tag(request)
    return listing(request, [
        permission_info(user, vhost, permission)
        for (user, vhost), permission in node_of(request).access.permissions.items()
    ])


async def show_permission(request: web.Request) -> web.Response:
    require_tag(request)
    key = (request.match_info["user"], request.match_info["vhost"])
    permission = node_of(request).access.permissions.get(key)
    if permission is None:
        raise not_found()
    return json_response(permission_info(*key, permission))


async def put_permission(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    user, vhost = request.match_info["user"], request.match_info["vhost"]
    body = await json_body(request)
    require_keys(body, "configure", "write", "read")
    if user not in node.access.users or vhost not in node.vhosts:
        raise bad_request("vhost_or_user_not_found")
    permission = permission_from(body)
    existed = (user, vhost) in node.access.permissions
    node.access.set_permissions(user, vhost, permission)
    node.definitions_changed()
    return web.Response(status=204 if existed else 201)


def permission_from(body: dict[str, Any]) -> Permission:
    """The permission a PUT body (or a definitions entry) gives, or RabbitMQ's 400 naming the
    first pattern that does not compile, with PCRE's message and offset."""
    try:
        return Permission(str(body["configure"]), str(body["write"]), str(body["read"]))
    except InvalidPattern as bad:
        raise error(400, "bad_request", [
            "invalid_regexp", erlang_chars(bad.pattern),
            [erlang_chars(bad.message), bad.offset],
        ]) from None


async def delete_permission(request: web.Request) -> web.Response:
    require_tag(request)
    node = node_of(request)
    key = (request.match_info["user"], request.match_info["vhost"])
    if node.access.permissions.pop(key, None) is None:
        raise not_found()
    node.definitions_changed()
    return web.Response(status=204)


async def permissions_of(request: web.Request) -> web.Response:
    """/api/users/{user}/permissions and /api/vhosts/{vhost}/permissions."""
    require_tag(request)
    node = node_of(request)
    user, vhost = user_and_vhost_of(request)
    return listing(request, [
        permission_info(u, v, permission)
        for (u, v), permission in node.access.permissions.items()
        if (user is None or u == user) and (vhost is None or v == vhost)
    ])


async def users_without_permissions(request: web.Request) -> web.Response:
    require_tag(request)
    access = node_of(request).access
    with_permissions = {user for user, _ in access.permissions}
    return listing(request, [
        user_info(user) for user in access.users.values() if user.name not in with_permissions
    ])


ROUTES = [
    ("GET", "/api/users/without-permissions", users_without_permissions),
    ("GET", "/api/vhosts", list_vhosts),
    ("GET", "/api/users/{user}/permissions", permissions_of),
    ("GET", "/api/vhosts/{vhost}/permissions", permissions_of),
    ("GET", "/api/vhosts/{vhost}", show_vhost),
    ("PUT", "/api/vhosts/{vhost}", put_vhost),
    ("DELETE", "/api/vhosts/{vhost}", delete_vhost),
    ("GET", "/api/users", list_users),
    ("GET", "/api/users/{user}", show_user),
    ("PUT", "/api/users/{user}", put_user),
    ("DELETE", "/api/users/{user}", delete_user),
    ("GET", "/api/permissions", list_permissions),
    ("GET", "/api/permissions/{vhost}/{user}", show_permission),
    ("PUT", "/api/permissions/{vhost}/{user}", put_permission),
    ("DELETE", "/api/permissions/{vhost}/{user}", delete_permission),
]
