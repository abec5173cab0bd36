"""RabbitMQ definitions documents (the JSON `rabbitmqctl export_definitions` writes): users,
vhosts, permissions, exchanges, queues and bindings. Loaded at start; exported whenever a
durable definition changes, as the broker's own durable definitions file."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker import __version__
from broker.auth import SHA256_ALGORITHM, Permission, User, hash_password
from broker.exchanges import Exchange
from broker.policies import Policy

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger(__name__)


class DefinitionsError(Exception):
    """The definitions file cannot be used; the message says which entry and why."""


def load_definitions(node: Node, path: Path) -> None:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DefinitionsError(f"cannot read definitions from {path}: {exc}") from exc
    apply_definitions(node, document)
    log.info("loaded definitions from %s", path)


def apply_definitions(node: Node, document: dict[str, Any], recovered: bool = False) -> None:
    """Declare what `document` defines; `recovered`: it is the broker's own definitions file,
    whose queues were accepted when declared and are not checked again."""
    for vhost in document.get("vhosts", []):
        node.add_vhost(vhost["name"])
    for user in document.get("users", []):
        node.access.add_user(_user(user))
    for permission in document.get("permissions", []):
        node.access.set_permissions(
            permission["user"], permission["vhost"],
            Permission(permission["configure"], permission["write"], permission["read"]),
        )
    for entry in document.get("policies", []):
        vhost = node.add_vhost(entry.get("vhost", "/"))
        vhost.set_policy(_policy(entry))
    for exchange in document.get("exchanges", []):
        vhost = node.add_vhost(exchange.get("vhost", "/"))
        vhost.declare_exchange(
            exchange["name"], exchange.get("type", "direct"), passive=False,
            durable=exchange.get("durable", True), auto_delete=exchange.get("auto_delete", False),
            internal=exchange.get("internal", False), arguments=exchange.get("arguments", {}),
        )
    for queue in document.get("queues", []):
        vhost = node.add_vhost(queue.get("vhost", "/"))
        vhost.declare_queue(
            queue["name"], None, passive=False, durable=queue.get("durable", True),
            exclusive=False, auto_delete=queue.get("auto_delete", False),
            arguments=queue.get("arguments", {}), recovered=recovered,
        )
    for binding in document.get("bindings", []):
        vhost = node.add_vhost(binding.get("vhost", "/"))
        source = vhost.get_exchange(binding["source"], 0, 0)
        if binding.get("destination_type", "queue") == "queue":
            destination = vhost.get_queue(binding["destination"], 0, 0)
        else:
            destination = vhost.get_exchange(binding["destination"], 0, 0)
        vhost.bind(source, destination, binding.get("routing_key", ""),
                   binding.get("arguments", {}))


def export_definitions(node: Node, durable_only: bool = True) -> dict[str, Any]:
    """The node's definitions, shaped like RabbitMQ 3.10's export: durable ones only for the
    broker's own definitions file, every non-exclusive one for /api/definitions."""
    access = node.access
    document: dict[str, Any] = {
        "rabbit_version": "3.10.8",
        "rabbitmq_version": "3.10.8",
        "product_name": "Warren",
        "product_version": __version__,
        "users": [
            {"name": user.name, "password_hash": user.password_hash,
             "hashing_algorithm": SHA256_ALGORITHM, "tags": list(user.tags), "limits": {}}
            for user in access.users.values()
        ],
        "vhosts": [{"name": name, "limits": [], "metadata": {"description": "", "tags": []}}
                   for name in node.vhosts],
        "permissions": [
            {"user": user, "vhost": vhost, "configure": permission.configure,
             "write": permission.write, "read": permission.read}
            for (user, vhost), permission in access.permissions.items()
        ],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [
            policy.as_definition()
            for vhost in node.vhosts.values() for policy in vhost.policies.values()
        ],
        "queues": [],
        "exchanges": [],
        "bindings": [],
    }
    for vhost in node.vhosts.values():
        for queue in vhost.queues.values():
            if queue.durable or not (durable_only or queue.exclusive):
                document["queues"].append({
                    "name": queue.name, "vhost": vhost.name, "durable": queue.durable,
                    "auto_delete": queue.auto_delete, "arguments": _json_table(queue.arguments),
                })
        for exchange in vhost.exchanges.values():
            if (exchange.durable or not durable_only) and exchange.name and not (
                exchange.name.startswith("amq.")
            ):
                document["exchanges"].append({
                    "name": exchange.name, "vhost": vhost.name, "type": exchange.type_name,
                    "durable": exchange.durable, "auto_delete": exchange.auto_delete,
                    "internal": exchange.internal, "arguments": _json_table(exchange.arguments),
                })
            for binding in exchange.bindings.values():
                destination = binding.destination
                exclusive = getattr(destination, "exclusive", False)
                if (exchange.durable and destination.durable) or not (
                    durable_only or exclusive
                ):
                    document["bindings"].append({
                        "source": exchange.name, "vhost": vhost.name,
                        "destination": destination.name,
                        "destination_type": "exchange" if isinstance(destination, Exchange)
                        else "queue",
                        "routing_key": binding.routing_key,
                        "arguments": _json_table(binding.arguments),
                    })
    return document


def _json_table(table: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(table, default=_json_value))


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return str(value)


def _policy(entry: dict[str, Any]) -> Policy:
    try:
        return Policy(
            vhost=entry.get("vhost", "/"), name=entry["name"], pattern=entry["pattern"],
            definition=dict(entry.get("definition", {})), priority=int(entry.get("priority", 0)),
            apply_to=entry.get("apply-to", "all"),
        )
    except (KeyError, ValueError, re.error) as exc:
        raise DefinitionsError(f"policy {entry.get('name')!r}: {exc}") from exc


def _user(entry: dict[str, Any]) -> User:
    name = entry["name"]
    algorithm = entry.get("hashing_algorithm", SHA256_ALGORITHM)
    if "password" in entry:
        password_hash = hash_password(entry["password"])
    elif algorithm == SHA256_ALGORITHM:
        password_hash = entry.get("password_hash", "")
    else:
        raise DefinitionsError(f"user '{name}': unsupported hashing_algorithm '{algorithm}'")
    tags = entry.get("tags", [])
    if isinstance(tags, str):
        tags = [tag for tag in tags.split(",") if tag]
    return User(name, password_hash, tags)
