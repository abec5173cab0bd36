"""/api/topic-permissions: what routing keys a user may publish with (write) and bind with (read)
on a topic exchange, per vhost and exchange, with RabbitMQ 3.10's shapes, statuses and errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.auth import TopicPermission
from broker.patterns import InvalidPattern
from management.api.common import (
    bad_request,
    erlang_chars,
    error,
    json_body,
    json_response,
    listing,
    node_of,
    not_found,
    require_keys,
    user_and_vhost_of,
)
from management.auth import require_tag

FIELDS = ("exchange", "write", "read")


def topic_permission_from(user: str, vhost: str, body: dict[str, Any]) -> TopicPermission:
    """The topic permission a PUT body (or a definitions entry) gives, or RabbitMQ's 400: the
    missing keys, or the first pattern that does not compile with PCRE's message and offset
    (the pattern as a string here, where /api/permissions shows a char list)."""
    require_keys(body, *FIELDS)
    values = [body[key] for key in FIELDS]
    if not all(isinstance(value, str) for value in values):
        # RabbitMQ answers 500 for these; nothing it could store
        raise bad_request("exchange, write and read must be strings")
    try:
        return TopicPermission(user, vhost, *values)
    except InvalidPattern as bad:
        raise error(400, "bad_request", [
            "invalid_regexp", bad.pattern, [erlang_chars(bad.message), bad.offset],
        ]) from None


async def list_topic_permissions(request: web.Request) -> web.Response:
    require_tag(request)
    return _listing(request, node_of(request).access.topic_permissions_of())


async def show_topic_permissions(request: web.Request) -> web.Response:
    """A user's topic permissions in a vhost, one per exchange (a list, as in RabbitMQ)."""
    require_tag(request)
    permissions = node_of(request).access.topic_permissions_of(
        request.match_info["user"], request.match_info["vhost"])
    if not permissions:
        raise not_found()
    return json_response([permission.as_definition() for permission in permissions])


async def put_topic_permission(request: web.Request) -> web.Response:
    """Set the user's topic permission for one exchange of the vhost: 201 if the user had none
    in the vhost yet, else 204."""
    require_tag(request)
    node = node_of(request)
    user, vhost = request.match_info["user"], request.match_info["vhost"]
    if user not in node.access.users or vhost not in node.vhosts:
        raise bad_request("vhost_or_user_not_found")
    permission = topic_permission_from(user, vhost, await json_body(request))
    existed = bool(node.access.topic_permissions_of(user, vhost))
    node.access.set_topic_permission(permission)
    node.definitions_changed()
    return web.Response(status=204 if existed else 201)


async def delete_topic_permissions(request: web.Request) -> web.Response:
    """Forget all of the user's topic permissions in the vhost (RabbitMQ's HTTP API cannot
    delete one exchange's)."""
    require_tag(request)
    node = node_of(request)
    if not node.access.clear_topic_permissions(request.match_info["user"],
                                               request.match_info["vhost"]):
        raise not_found()
    node.definitions_changed()
    return web.Response(status=204)


async def topic_permissions_of(request: web.Request) -> web.Response:
    """/api/users/{user}/topic-permissions and /api/vhosts/{vhost}/topic-permissions."""
    require_tag(request)
    user, vhost = user_and_vhost_of(request)
    return _listing(request, node_of(request).access.topic_permissions_of(user, vhost))


def _listing(request: web.Request, permissions: list[TopicPermission]) -> web.Response:
    ordered = sorted(permissions, key=lambda permission: (permission.vhost, permission.user))
    return listing(request, [permission.as_definition() for permission in ordered])


ROUTES = [
    ("GET", "/api/topic-permissions", list_topic_permissions),
    ("GET", "/api/topic-permissions/{vhost}/{user}", show_topic_permissions),
    ("PUT", "/api/topic-permissions/{vhost}/{user}", put_topic_permission),
    ("DELETE", "/api/topic-permissions/{vhost}/{user}", delete_topic_permissions),
    ("GET", "/api/users/{user}/topic-permissions", topic_permissions_of),
    ("GET", "/api/vhosts/{vhost}/topic-permissions", topic_permissions_of),
]
