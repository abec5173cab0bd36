"""/api/policies: set, list and clear policies."""

from __future__ import annotations

import html
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
    require_keys,
    vhost_for_write,
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
    vhost = vhost_for_write(request)
    body = await json_body(request)
    name = request.match_info["name"]
    require_keys(body, "pattern", "definition")
    definition = body["definition"]
    if not isinstance(body["pattern"], str) or not isinstance(definition, dict):
        raise bad_request("pattern must be a string and definition an object")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise _invalid(f"apply-to '{apply_to}' unrecognised; should be 'queues', 'exchanges' "
                       "or 'all'")
    if not definition:
        raise _invalid("no policy provided")
    if "priority" in body and not isinstance(body["priority"], int):
        raise _invalid("priority should be a number")
    unknown = [(key, value) for key, value in definition.items() if key not in POLICY_SETTINGS]
    if unknown:
        shown = ",".join(f"{{<<\"{key}\">>,{value}}}" for key, value in unknown)
        raise _invalid(f"[{shown}] are not recognised policy settings")
    for key, value in definition.items():
        problem = POLICY_SETTINGS[key](value)
        if problem:
            raise _invalid(f"{_erlang_value(value)} is not a valid {problem}")
    try:
        policy = Policy(vhost.name, name, body["pattern"], definition,
                        int(body.get("priority", 0)), apply_to)
    except (ValueError, re.error) as exc:
        raise bad_request(str(exc)) from None
    existed = name in vhost.policies
    vhost.set_policy(policy)
    return web.Response(status=204 if existed else 201)


def _invalid(detail: str) -> web.HTTPException:
    """RabbitMQ's policy validation error (its text comes HTML-escaped)."""
    return bad_request(html.escape(f"Validation failed\n\n{detail}\n", quote=False))


def _erlang_value(value: object) -> str:
    return f'<<"{value}">>' if isinstance(value, str) else str(value)


def _integer(what: str):
    def check(value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else what
    return check


def _text(what: str):
    return lambda value: None if isinstance(value, str) else what


POLICY_SETTINGS = {
    "message-ttl": _integer("message TTL"),
    "expires": _integer("TTL"),
    "max-length": _integer("maximum length"),
    "max-length-bytes": _integer("maximum length in bytes"),
    "delivery-limit": _integer("delivery limit"),
    "overflow": lambda value: None if value in ("drop-head", "reject-publish",
                                                 "reject-publish-dlx") else "overflow value",
    "dead-letter-exchange": _text("dead letter exchange"),
    "dead-letter-routing-key": _text("dead letter routing key"),
    "alternate-exchange": _text("alternate exchange"),
    "queue-mode": _text("queue mode"),
}


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
