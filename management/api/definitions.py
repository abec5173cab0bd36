"""/api/definitions: export and import RabbitMQ's definitions document (whole node or one vhost)."""

from __future__ import annotations

from aiohttp import web

from management.api.common import bad_request, json_body, json_response, node_of, vhost_of
from management.auth import require_tag
from protocol.errors import AMQPError
from storage.definitions import DefinitionsError, apply_definitions, export_definitions


async def export_all(request: web.Request) -> web.Response:
    require_tag(request)
    return json_response(export_definitions(node_of(request)))


async def export_vhost(request: web.Request) -> web.Response:
    require_tag(request)
    vhost = vhost_of(request)
    document = export_definitions(node_of(request))
    per_vhost = {"rabbit_version": document["rabbit_version"]}
    for key in ("policies", "queues", "exchanges", "bindings", "parameters"):
        per_vhost[key] = [item for item in document[key] if item.get("vhost") == vhost.name]
    return json_response(per_vhost)


async def import_all(request: web.Request) -> web.Response:
    require_tag(request)
    document = await json_body(request)
    if "vhost" in request.match_info:
        vhost = vhost_of(request).name
        for key in ("policies", "queues", "exchanges", "bindings"):
            for item in document.get(key, []):
                item["vhost"] = vhost
    try:
        apply_definitions(node_of(request), document)
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
