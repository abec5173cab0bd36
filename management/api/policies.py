"""/api/policies and /api/operator-policies: set, list and clear policies and operator
policies (RabbitMQ 3.10.8's rules: operator policies take only the limit keys, and only an
administrator sets, clears or reads one by name; a list shows them to every user of the vhost)."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from broker.definitions import OPERATOR_POLICY, operator_policy_parameter
from broker.names import erlang_pretty
from broker.patterns import InvalidPattern
from broker.policies import APPLY_TO, UNDEFINED, Policy
from broker.stream_args import parse_age
from broker.vhost import VirtualHost
from management.api.common import (
    USER,
    bad_request,
    error,
    is_local_admin,
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


def _table(vhost: VirtualHost, operator: bool) -> dict[str, Policy]:
    return vhost.operator_policies if operator else vhost.policies


async def list_policies(request: web.Request, operator: bool = False) -> web.Response:
    node = node_of(request)
    vhosts = [vhost_of(request)] if "vhost" in request.match_info else list(node.vhosts.values())
    return listing(request, [
        policy.as_definition() for vhost in vhosts
        for policy in _table(vhost, operator).values()
    ])


async def show_policy(request: web.Request, operator: bool = False) -> web.Response:
    if operator:
        require_tag(request)
    policy = _table(vhost_of(request), operator).get(request.match_info["name"])
    if policy is None:
        raise not_found()
    return json_response(policy.as_definition())


async def put_policy(request: web.Request, operator: bool = False) -> web.Response:
    require_tag(request, *(() if operator else ("policymaker",)))
    vhost = vhost_for_write(request)
    body = await json_body(request)
    name = request.match_info["name"]
    policy = policy_from(vhost.name, name, body, operator=operator)
    existed = name in _table(vhost, operator)
    vhost.set_policies([policy], operator)
    return web.Response(status=204 if existed else 201)


def policy_from(vhost: str, name: str, body: dict[str, Any], where: str = "",
                operator: bool = False, parameter: bool = False) -> Policy:
    """The policy (`operator`: operator policy) a PUT body (or a definitions entry, or a
    runtime `parameter`'s value) describes, or RabbitMQ's 400 for it; `where` follows the
    validation text (the import's " (vhost/name)"). The texts are HTML-escaped, but for an
    operator policy's own PUT."""
    invalid = partial(_invalid, where=where, escaped=not operator or bool(where) or parameter)
    settings = OPERATOR_POLICY_SETTINGS if operator else POLICY_SETTINGS
    require_keys(body, "pattern", "definition")
    definition = body["definition"]
    if not isinstance(body["pattern"], str) or not isinstance(definition, dict):
        raise bad_request("pattern must be a string and definition an object")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise invalid(f"apply-to '{apply_to}' unrecognised; should be 'queues', 'exchanges' "
                      "or 'all'")
    if not definition:
        raise invalid("no policy provided")
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise invalid(f"priority should be a number, actually was {_erlang_value(priority)}")
    unknown = [(key, value) for key, value in definition.items() if key not in settings]
    if unknown:
        shown = ",".join(f"{{{_erlang_value(key)},{_erlang_value(value)}}}"
                         for key, value in unknown)
        raise invalid(f"[{shown}] are not recognised policy settings")
    for key, value in definition.items():
        problem = settings[key](value)
        if problem:
            raise invalid(f"{_erlang_value(value)} is not a valid {problem}")
    try:
        return Policy(vhost, name, body["pattern"], definition, priority, apply_to)
    except InvalidPattern as bad:
        lead = "pattern should be regular expression but is invalid: "
        term = erlang_pretty(f"{{{_erlang_string(bad.message)},{bad.offset}}}", len(lead))
        raise invalid(lead + term) from None


def _erlang_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(detail: str, where: str = "", escaped: bool = True) -> web.HTTPException:
    """RabbitMQ's policy validation error: a policy's text comes HTML-escaped, an operator
    policy's as it is."""
    text = f"Validation failed\n\n{detail}\n{where}"
    return bad_request(html.escape(text, quote=False) if escaped else text)


def _erlang_value(value: object) -> str:
    return f'<<"{value}">>' if isinstance(value, str) else str(value)


def _integer(what: str, least: int = 0):
    def check(value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
        return None if ok else what
    return check


def _text(what: str):
    return lambda value: None if isinstance(value, str) else what


POLICY_SETTINGS = {
    "message-ttl": _integer("message TTL"),
    "expires": _integer("queue expiry", least=1),
    "max-length": _integer("maximum length"),
    "max-length-bytes": _integer("maximum length in bytes"),
    "delivery-limit": _integer("delivery limit"),
    # (quorum queues; RabbitMQ 3.10.8 names both "maximum memory in bytes" when refusing one)
    "max-in-memory-length": _integer("maximum memory in bytes"),
    "max-in-memory-bytes": _integer("maximum memory in bytes"),
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


# The keys RabbitMQ 3.10.8 takes in an operator policy (its operator_policy_validator)
OPERATOR_POLICY_SETTINGS = {key: POLICY_SETTINGS[key] for key in (
    "expires", "message-ttl", "max-length", "max-length-bytes", "delivery-limit",
    "max-in-memory-length", "max-in-memory-bytes")}


async def delete_policy(request: web.Request, operator: bool = False) -> web.Response:
    require_tag(request, *(() if operator else ("policymaker",)))
    vhost = vhost_of(request)
    name = request.match_info["name"]
    if name not in _table(vhost, operator):
        raise not_found()
    vhost.clear_policy(name, operator)
    return web.Response(status=204)


def _parameters_reader(request: web.Request) -> None:
    user = request[USER]
    if not {"administrator", "policymaker"} & set(user.tags) and not is_local_admin(request):
        raise error(401, "not_authorised", "User not authorised to access object")


async def list_parameters(request: web.Request) -> web.Response:
    """/api/parameters[/{component}[/{vhost}]]: the runtime parameters Warren has, its
    operator policies (for policymakers, as RabbitMQ lists them); none of any other component
    (RabbitMQ 3.10.8 lists none of a component it does not know, where the vhost exists)."""
    _parameters_reader(request)
    node = node_of(request)
    vhosts = [vhost_of(request)] if "vhost" in request.match_info else list(node.vhosts.values())
    if request.match_info.get("component", OPERATOR_POLICY) != OPERATOR_POLICY:
        return listing(request, [])
    return listing(request, [operator_policy_parameter(policy) for vhost in vhosts
                             for policy in vhost.operator_policies.values()])


async def show_parameter(request: web.Request) -> web.Response:
    """/api/parameters/{component}/{vhost}/{name}: an operator policy as a runtime
    parameter (administrators only, as by its own path); 404 for any other component."""
    _parameters_reader(request)
    vhost = vhost_of(request)
    if request.match_info["component"] != OPERATOR_POLICY:
        raise not_found()
    require_tag(request)
    policy = vhost.operator_policies.get(request.match_info["name"])
    if policy is None:
        raise not_found()
    return json_response(operator_policy_parameter(policy))


async def put_parameter(request: web.Request) -> web.Response:
    """PUT /api/parameters/{component}/{vhost}/{name} with {"value": ...}: an operator
    policy set as RabbitMQ sets one through its runtime parameters (the value names its
    priority); RabbitMQ's refusal of any other component."""
    vhost = vhost_for_write(request)
    body = await json_body(request)
    require_keys(body, "value")
    component, name = request.match_info["component"], request.match_info["name"]
    if component == OPERATOR_POLICY:
        require_tag(request)
    else:
        _parameters_reader(request)
    policy = operator_policy_from_parameter(vhost.name, component, name, body["value"])
    existed = name in vhost.operator_policies
    vhost.set_policies([policy], operator=True)
    return web.Response(status=204 if existed else 201)


async def delete_parameter(request: web.Request) -> web.Response:
    if request.match_info["component"] != OPERATOR_POLICY:
        _parameters_reader(request)
        vhost_of(request)
        raise not_found()
    return await delete_policy(request, operator=True)


def operator_policy_from_parameter(vhost: str, component: object, name: str, value: object,
                                   where: str = "") -> Policy:
    """A runtime parameter's value (a PUT of /api/parameters, a definitions entry) as the
    operator policy it describes, or RabbitMQ 3.10.8's 400: its refusal of a component it does
    not know (Warren has no other), a value that names no priority. `where` follows an
    import's texts (" (vhost/component/name)")."""
    if component != OPERATOR_POLICY:
        raise bad_request(f"Validation failed\n\ncomponent {component} not found\n{where}")
    if not isinstance(value, dict):
        raise _invalid(f"{name} not a list {_erlang_value(value)}", where)
    if "priority" not in value:
        raise bad_request(f'Validation failed\n\nKey "priority" not found in {name}\n{where}')
    policy = policy_from(vhost, name, value, where, operator=True, parameter=True)
    if "apply-to" not in value:  # (then it applies to nothing, as on RabbitMQ)
        policy.apply_to = UNDEFINED
    return policy


def _operator(handler: Callable[..., Awaitable[web.Response]]
              ) -> Callable[[web.Request], Awaitable[web.Response]]:
    return partial(handler, operator=True)


ROUTES = [
    ("GET", "/api/policies", list_policies),
    ("GET", "/api/policies/{vhost}", list_policies),
    ("GET", "/api/policies/{vhost}/{name}", show_policy),
    ("PUT", "/api/policies/{vhost}/{name}", put_policy),
    ("DELETE", "/api/policies/{vhost}/{name}", delete_policy),
    ("GET", "/api/operator-policies", _operator(list_policies)),
    ("GET", "/api/operator-policies/{vhost}", _operator(list_policies)),
    ("GET", "/api/operator-policies/{vhost}/{name}", _operator(show_policy)),
    ("PUT", "/api/operator-policies/{vhost}/{name}", _operator(put_policy)),
    ("DELETE", "/api/operator-policies/{vhost}/{name}", _operator(delete_policy)),
    ("GET", "/api/parameters", list_parameters),
    ("GET", "/api/parameters/{component}", list_parameters),
    ("GET", "/api/parameters/{component}/{vhost}", list_parameters),
    ("GET", "/api/parameters/{component}/{vhost}/{name}", show_parameter),
    ("PUT", "/api/parameters/{component}/{vhost}/{name}", put_parameter),
    ("DELETE", "/api/parameters/{component}/{vhost}/{name}", delete_parameter),
]
