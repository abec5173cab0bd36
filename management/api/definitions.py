"""/api/definitions: export and import RabbitMQ's definitions document (whole node or one vhost).
An import checks each entry with its endpoint's own checks and applies all of it or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from broker.auth import Permission
from broker.definitions import (
    DefinitionsError,
    apply_definitions,
    export_definitions,
    operator_policy_parameter,
)
from broker.errors import BrokerError
from broker.node import Node
from broker.vhost import QUEUE_TYPES
from management.api.access import permission_from
from management.api.bindings import check_binding_names
from management.api.common import (
    bad_request,
    check_name_length,
    error,
    json_response,
    node_of,
    refusal,
    require_keys,
    vhost_for_write,
)
from management.api.exchanges import exchange_declaration
from management.api.policies import operator_policy_from_parameter, policy_from
from management.api.queues import queue_declaration
from management.api.topic_permissions import topic_permission_from
from management.auth import require_tag


async def export_all(request: web.Request) -> web.Response:
    require_tag(request)
    return json_response(export_definitions(node_of(request), durable_only=False))


async def export_vhost(request: web.Request) -> web.Response:
    require_tag(request)
    name = request.match_info["vhost"]
    if name not in node_of(request).vhosts:
        raise bad_request("vhost_not_found")
    document = export_definitions(node_of(request), durable_only=False)
    per_vhost = {"rabbit_version": document["rabbit_version"]}
    for key in ("policies", "queues", "exchanges", "bindings", "parameters"):
        per_vhost[key] = [  # RabbitMQ drops "vhost" from all but policies and parameters
            item if key in ("policies", "parameters") else
            {field: value for field, value in item.items() if field != "vhost"}
            for item in document[key] if item.get("vhost") == name
        ]
    return json_response(per_vhost)


async def import_all(request: web.Request) -> web.Response:
    """Import a definitions document, all of it or nothing: every entry is checked as its own
    endpoint checks it, then applied; if one still fails, what was applied is reverted."""
    user = require_tag(request)
    try:
        document = json.loads(await request.text())
    except ValueError:
        raise bad_request("failed_to_parse_json") from None
    if not isinstance(document, dict):
        raise bad_request("failed_to_parse_json")
    node = node_of(request)
    if "vhost" in request.match_info:
        vhost = vhost_for_write(request).name
        for key in ("policies", "queues", "exchanges", "bindings", "parameters"):
            for item in _entries(document, key):
                item["vhost"] = vhost
    checked = _checked(node, document)
    new_vhosts = {entry["name"] for entry in checked["vhosts"]} - set(node.vhosts)
    undo: list[Callable[[], None]] = []
    try:
        apply_definitions(node, checked, undo)
    except BrokerError as failure:
        _revert(undo)
        raise refusal(failure, "import") from None
    except web.HTTPException:
        _revert(undo)
        raise
    except (DefinitionsError, KeyError, TypeError, ValueError) as exc:
        _revert(undo)
        raise bad_request(f"could not import definitions: {exc}") from None
    for name in new_vhosts:  # as with PUT /api/vhosts: the importer gets full access
        if (user.name, name) not in node.access.permissions:
            node.access.set_permissions(user.name, name, Permission(".*", ".*", ".*"))
    node.definitions_changed()
    return web.Response(status=204)


def _revert(undo: list[Callable[[], None]]) -> None:
    for action in reversed(undo):
        action()


def _entries(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = document.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise bad_request(f"{key} must be a list of objects")
    return entries


def _name(entry: dict[str, Any], key: str = "name") -> str:
    name = entry.get(key)
    if not isinstance(name, str):
        raise bad_request(f"[{{key_missing,{key}}}]")
    return name


def _checked(node: Node, document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The document's entries as the endpoints would take them (defaults filled in, values
    parsed), or the endpoint's error for the first bad one; nothing is changed here."""
    checked: dict[str, list[dict[str, Any]]] = {}
    checked["vhosts"] = []
    for entry in _entries(document, "vhosts"):
        check_name_length("vhost", _name(entry))
        queue_type = (entry.get("metadata") or {}).get("default_queue_type")
        if queue_type is not None and queue_type not in QUEUE_TYPES:
            raise bad_request("invalid_queue_type")
        checked["vhosts"].append(entry)
    vhosts = set(node.vhosts) | {entry["name"] for entry in checked["vhosts"]}
    for key in ("queues", "exchanges", "bindings", "policies", "parameters", "permissions",
                "topic_permissions"):
        for entry in _entries(document, key):
            if entry.get("vhost", "/") not in vhosts:
                raise error(400, "bad_request", ["no_such_vhost", entry.get("vhost")])
    checked["users"] = []
    for entry in _entries(document, "users"):
        check_name_length("user", _name(entry))
        checked["users"].append(entry)
    users = set(node.access.users) | {entry["name"] for entry in checked["users"]}
    checked["permissions"] = []
    for entry in _entries(document, "permissions"):
        if _name(entry, "user") not in users:
            raise error(400, "bad_request", ["no_such_user", entry["user"]])
        require_keys(entry, "configure", "write", "read")
        permission = permission_from(entry)
        checked["permissions"].append({
            "user": entry["user"], "vhost": entry.get("vhost", "/"),
            "configure": permission.configure, "write": permission.write,
            "read": permission.read,
        })
    checked["topic_permissions"] = []
    for entry in _entries(document, "topic_permissions"):
        if _name(entry, "user") not in users:
            raise error(400, "bad_request", ["no_such_user", entry["user"]])
        permission = topic_permission_from(entry["user"], entry.get("vhost", "/"), entry)
        checked["topic_permissions"].append(permission.as_definition())
    checked["policies"] = []
    for entry in _entries(document, "policies"):
        vhost, name = entry.get("vhost", "/"), _name(entry)
        checked["policies"].append(
            policy_from(vhost, name, entry, f" ({vhost}/{name})").as_definition())
    checked["parameters"] = []
    for entry in _entries(document, "parameters"):
        checked["parameters"].append(_operator_policy_parameter(entry))
    queues: dict[str, set[str]] = {name: set(vhost.queues) for name, vhost in node.vhosts.items()}
    checked["queues"] = []
    for entry in _entries(document, "queues"):
        name, vhost = _name(entry), entry.get("vhost", "/")
        declared = queue_declaration(name, {"durable": True, **entry})
        checked["queues"].append({"name": name, "vhost": vhost, **declared})
        queues.setdefault(vhost, set()).add(name)
    exchanges: dict[str, set[str]] = {name: set(vhost.exchanges) for name, vhost in
                                      node.vhosts.items()}
    checked["exchanges"] = []
    for entry in _entries(document, "exchanges"):
        name, vhost = _name(entry), entry.get("vhost", "/")
        declared = exchange_declaration(name, {"durable": True, **entry})
        checked["exchanges"].append({
            "name": name, "vhost": vhost, "type": declared["type_name"],
            **{key: declared[key] for key in ("durable", "auto_delete", "internal", "arguments")},
        })
        exchanges.setdefault(vhost, set()).add(name)
    checked["bindings"] = []
    for entry in _entries(document, "bindings"):
        vhost = entry.get("vhost", "/")
        kind = entry.get("destination_type", "queue")
        if kind not in ("queue", "exchange"):
            raise bad_request(f"unknown destination_type '{kind}'")
        known_exchanges, known_queues = exchanges.get(vhost, set()), queues.get(vhost, set())
        check_binding_names(vhost, _name(entry, "source"), kind, _name(entry, "destination"),
                            known_exchanges.__contains__, known_queues.__contains__)
        arguments = entry.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise bad_request("arguments must be an object")
        checked["bindings"].append({**entry, "destination_type": kind,
                                    "routing_key": str(entry.get("routing_key", "")),
                                    "arguments": arguments})
    return checked


def _operator_policy_parameter(entry: dict[str, Any]) -> dict[str, Any]:
    """A "parameters" entry as RabbitMQ 3.10.8 imports it: an operator policy, or its
    refusal."""
    vhost, name, component = entry.get("vhost", "/"), _name(entry), entry.get("component")
    policy = operator_policy_from_parameter(vhost, component, name, entry.get("value"),
                                            f" ({vhost}/{component}/{name})")
    return operator_policy_parameter(policy)


ROUTES = [
    ("GET", "/api/definitions", export_all),
    ("POST", "/api/definitions", import_all),
    ("GET", "/api/definitions/{vhost}", export_vhost),
    ("POST", "/api/definitions/{vhost}", import_all),
]
