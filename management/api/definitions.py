"""/api/definitions: export and import RabbitMQ's definitions document (whole node or one vhost)."""

from __future__ import annotations

import json

from aiohttp import web

from broker.auth import Permission
from management.api.common import bad_request, error, json_response, node_of, vhost_for_write
from management.auth import require_tag
from protocol.errors import AMQPError
from storage.definitions import DefinitionsError, apply_definitions, export_definitions


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
        per_vhost[key] = [  # RabbitMQ drops "vhost" from everything but policies
            item if key == "policies" else
            {field: value for field, value in item.items() if field != "vhost"}
            for item in document[key] if item.get("vhost") == name
        ]
    return json_response(per_vhost)


async def import_all(request: web.Request) -> web.Response:
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
        for key in ("policies", "queues", "exchanges", "bindings"):
            for item in document.get(key, []):
                item["vhost"] = vhost
    new_vhosts = {v.get("name") for v in document.get("vhosts", [])} - set(node.vhosts)
    known = set(node.vhosts) | new_vhosts
    for key in ("queues", "exchanges", "bindings", "policies", "permissions"):
        for item in document.get(key, []):
            if item.get("vhost", "/") not in known:
                raise error(400, "bad_request", ["no_such_vhost", item.get("vhost")])
    try:
        apply_definitions(node, document)
        for name in new_vhosts:  # as with PUT /api/vhosts: the importer gets full access
            if (user.name, name) not in node.access.permissions:
                node.access.set_permissions(user.name, name, Permission(".*", ".*", ".*"))
    except (DefinitionsError, AMQPError, KeyError, TypeError, ValueError) as exc:
        raise bad_request(f"could not import definitions: {exc}") from None
    node_of(request).definitions_changed()
    return web.Response(status=204)


ROUTES = [
    ("GET", "/api/definitions", export_all),
    ("POST", "/api/definitions", import_all),
    ("GET", "/api/definitions/{vhost}", export_vhost),
    ("POST", "/api/definitions/{vhost}", import_all),
]
