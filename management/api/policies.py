"""/api/policies: set, list and clear policies."""

from __future__ import annotations

import re

from aiohttp import web

from broker.policies import APPLY_TO, Policy
from management.api.common import (
    bad_request,
    json_body,
    json_response,
    listing,
    node_of,
    not_found,
    vhost_of,
)
from management.auth import require_tag


async def list_policies(request: web.Request) -> web.Response:
    node = node_of(request)
    vhosts = [vhost_of(request)] if "vhost" in request.match_info else list(node.vhosts.values())
    return listing(request, [
        policy.as_definition() for vhost in vhosts for policy in vhost.policies.values()
    ])


async def show_policy(request: web.Request) -> web.Response:
    policy = vhost_of(request).policies.get(request.match_info["name"])
    if policy is None:
        raise not_found()
    return json_response(policy.as_definition())


async def put_policy(request: web.Request) -> web.Response:
    require_tag(request, "policymaker")
    vhost = vhost_of(request)
    body = await json_body(request)
    name = request.match_info["name"]
    definition = body.get("definition")
    if not isinstance(body.get("pattern"), str) or not isinstance(definition, dict):
        raise bad_request("pattern (a string) and definition (an object) are required")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise bad_request(f"apply-to must be one of {', '.join(APPLY_TO)}")
    try:
        policy = Policy(vhost.name, name, body["pattern"], definition,
                        int(body.get("priority", 0)), apply_to)
    except (ValueError, re.error) as exc:
        raise bad_request(str(exc)) from None
    existed = name in vhost.policies
    vhost.set_policy(policy)
    return web.Response(status=204 if existed else 201)


async def delete_policy(request: web.Request) -> web.Response:
    require_tag(request, "policymaker")
    vhost = vhost_of(request)
    name = request.match_info["name"]
    if name not in vhost.policies:
        raise not_found()
    vhost.clear_policy(name)
    return web.Response(status=204)


ROUTES = [
    ("GET", "/api/policies", list_policies),
    ("GET", "/api/policies/{vhost}", list_policies),
    ("GET", "/api/policies/{vhost}/{name}", show_policy),
    ("PUT", "/api/policies/{vhost}/{name}", put_policy),
    ("DELETE", "/api/policies/{vhost}/{name}", delete_policy),
]
