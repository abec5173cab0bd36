"""HTTP basic auth with the broker's users, and RabbitMQ's management tags: any of
administrator, monitoring, management or policymaker lets a user in; changing users, vhosts,
permissions and definitions takes administrator, policies take policymaker."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from aiohttp import web

from broker.auth import User, is_loopback
from management.api.common import USER as USER_KEY
from management.api.common import (
    body_too_large,
    error,
    method_not_allowed,
    node_of,
    not_found,
)

MANAGEMENT_TAGS = {"administrator", "monitoring", "management", "policymaker"}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="RabbitMQ Management"'}


def _login_failed() -> web.HTTPException:
    failure = error(401, "not_authorized", "Login failed")
    failure.headers.update(_CHALLENGE)
    return failure


@web.middleware
async def rabbitmq_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The router's own 404 and 405, and a body over the size limit, answered as RabbitMQ
    answers them."""
    try:
        return await handler(request)
    except web.HTTPNotFound as failure:
        if failure.content_type == "application/json":
            raise
        raise not_found() from None
    except web.HTTPMethodNotAllowed as failure:
        raise method_not_allowed(request.method, failure.allowed_methods) from None
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large() from None


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/api/") or request.path == "/api/auth":
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is None:
        raise web.HTTPUnauthorized(headers=_CHALLENGE, text="")
    if not header.startswith("Basic "):
        raise _login_failed()
    try:
        username, _, password = base64.b64decode(header[6:], validate=True).decode().partition(
            ":"
        )
    except ValueError:
        raise web.HTTPBadRequest() from None
    loopback = is_loopback(request.remote or "")
    user = node_of(request).access.authenticate(username, password, loopback)
    if user is None:
        raise _login_failed()
    if not MANAGEMENT_TAGS & set(user.tags):
        raise error(401, "not_authorised", "Not management user")
    request[USER_KEY] = user
    return await handler(request)


def require_tag(request: web.Request, *tags: str) -> User:
    """403 unless the user has one of `tags` (administrator always passes)."""
    user = request[USER_KEY]
    if "administrator" in user.tags or set(tags) & set(user.tags):
        return user
    raise error(401, "not_authorised", "Not administrator user")
