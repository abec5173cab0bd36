"""HTTP basic auth with the broker's users, and RabbitMQ's management tags: any of
administrator, monitoring, management or policymaker lets a user in; changing users, vhosts,
permissions and definitions takes administrator, policies take policymaker. The local
administration credential (management/local_admin.py) acts as `LOCAL_ADMIN`, an administrator
that no vhost permission limits, as rabbitmqctl does."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from aiohttp import web

from broker.auth import User, is_loopback
from management import local_admin
from management.api.common import (
    LOCAL_ADMIN,
    body_too_large,
    error,
    method_not_allowed,
    node_of,
    not_found,
)
from management.api.common import USER as USER_KEY

MANAGEMENT_TAGS = {"administrator", "monitoring", "management", "policymaker"}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="RabbitMQ Management"'}
# This node's local administration secret (None: local administration is off)
LOCAL_SECRET = web.AppKey("local_admin_secret", str)


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
    if header is None and local_admin.FORWARD_HEADER not in request.headers:
        raise web.HTTPUnauthorized(headers=_CHALLENGE, text="")
    if await _is_local_admin(request, header):
        request[USER_KEY] = LOCAL_ADMIN
        return await handler(request)
    if header is None or not header.startswith("Basic "):
        raise _login_failed()
    try:
        username, _, password = base64.b64decode(header[6:], validate=True).decode().partition(
            ":"
        )
    except ValueError:
        raise web.HTTPBadRequest() from None
    loopback = is_loopback(request.remote or "")
    access = node_of(request).access
    user = access.authenticate(username, password, loopback)
    if user is None:
        if not loopback and access.authenticate(username, password, loopback=True):
            # RabbitMQ's answer to a loopback-only user elsewhere (no challenge)
            raise error(401, "not_authorised", "User can only log in via localhost")
        raise _login_failed()
    if not MANAGEMENT_TAGS & set(user.tags):
        raise error(401, "not_authorised", "Not management user")
    request[USER_KEY] = user
    return await handler(request)


async def _is_local_admin(request: web.Request, header: str | None) -> bool:
    """This node's local secret from loopback, or a request a follower of this leader passed
    on for its own local administrator (signed with the cluster secret). A wrong secret is a
    failed login like a wrong password."""
    forwarded = request.headers.get(local_admin.FORWARD_HEADER)
    if forwarded is not None:
        node = node_of(request)
        cluster_secret = node.config.cluster_secret if node.cluster is not None else None
        if not local_admin.verify_forward(forwarded, cluster_secret, request.method,
                                          request.raw_path, await request.read()):
            raise _login_failed()
        return True
    if not local_admin.is_local_header(header):
        return False
    if not local_admin.accepts(header, request.app.get(LOCAL_SECRET),
                               is_loopback(request.remote or "")):
        raise _login_failed()
    return True


def require_tag(request: web.Request, *tags: str) -> User:
    """403 unless the user has one of `tags` (administrator always passes)."""
    user = request[USER_KEY]
    if "administrator" in user.tags or set(tags) & set(user.tags):
        return user
    raise error(401, "not_authorised", "Not administrator user")
