"""/api/policies: set, list and clear policies."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from broker.names import erlang_pretty
from broker.patterns import InvalidPattern
from broker.policies import APPLY_TO, Policy
from broker.stream_args import parse_age
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
    policy = policy_from(vhost.name, name, body)
    existed = name in vhost.policies
    vhost.set_policy(policy)
    return web.Response(status=204 if existed else 201)


def policy_from(vhost: str, name: str, body: dict[str, Any], where: str = "") -> Policy:
    """The policy a PUT body (or a definitions entry) describes, or RabbitMQ's 400 for it;
    `where` follows the validation text (the import's " (vhost/name)")."""
    require_keys(body, "pattern", "definition")
    definition = body["definition"]
    if not isinstance(body["pattern"], str) or not isinstance(definition, dict):
        raise bad_request("pattern must be a string and definition an object")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise _invalid(f"apply-to '{apply_to}' unrecognised; should be 'queues', 'exchanges' "
                       "or 'all'", where)
    if not definition:
        raise _invalid("no policy provided", where)
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise _invalid(f"priority should be a number, actually was {_erlang_value(priority)}",
                       where)
    unknown = [(key, value) for key, value in definition.items() if key not in POLICY_SETTINGS]
    if unknown:
        shown = ",".join(f"{{<<\"{key}\">>,{value}}}" for key, value in unknown)
        raise _invalid(f"[{shown}] are not recognised policy settings", where)
    for key, value in definition.items():
        problem = POLICY_SETTINGS[key](value)
        if problem:
            raise _invalid(f"{_erlang_value(value)} is not a valid {problem}", where)
    try:
        return Policy(vhost, name, body["pattern"], definition, priority, apply_to)
    except InvalidPattern as bad:
        lead = "pattern should be regular expression but is invalid: "
        term = erlang_pretty(f"{{{_erlang_string(bad.message)},{bad.offset}}}", len(lead))
        raise _invalid(lead + term, where) from None


def _erlang_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(detail: str, where: str = "") -> web.HTTPException:
    """RabbitMQ's policy validation error (its text comes HTML-escaped)."""
    return bad_request(html.escape(f"Validation failed\n\n{detail}\n{where}", quote=False))


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
    # streams (RabbitMQ 3.10.8 answers a bad max-age with an empty 500; Warren says why)
    "max-age": lambda value: None if isinstance(value, str) and parse_age(value) is not None
    else "max age (a positive integer and one of Y M D h m s)",
    "stream-max-segment-size-bytes": _integer("maximum segment size in bytes"),
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
