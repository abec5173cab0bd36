"""RabbitMQ definitions documents (the JSON `rabbitmqctl export_definitions` writes): users,
vhosts, permissions, topic permissions, exchanges, queues, bindings, policies and operator
policies (runtime parameters of component "operator_policy", as RabbitMQ writes them; no
other component is exported or applied), built from the broker
core and applied to it. Storage only keeps the document as bytes (storage/definitions.py reads
it; the log writes the bytes `definitions_bytes` makes whenever a durable definition changes)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker import __version__
from broker.auth import (
    SHA256_ALGORITHM,
    AccessControl,
    Permission,
    TopicPermission,
    User,
    hash_password,
)
from broker.exchanges import Exchange
from broker.policies import UNDEFINED, Policy
from broker.resources import is_reserved
from storage.definitions import DefinitionsError, read_document

if TYPE_CHECKING:
    from broker.vhost import VirtualHost

log = logging.getLogger(__name__)

OPERATOR_POLICY = "operator_policy"  # the runtime parameter component of operator policies


class Node(Protocol):
    """What definitions are built from and applied to: broker/node.py's `Node` (a protocol, so
    that this module, which the node imports, does not import it back)."""

    access: AccessControl
    vhosts: dict[str, VirtualHost]

    def add_vhost(self, name: str) -> VirtualHost: ...

    def delete_vhost(self, vhost: VirtualHost) -> None: ...


__all__ = ["DefinitionsError", "apply_definitions", "definitions_bytes", "export_definitions",
           "load_definitions"]


def load_definitions(node: Node, path: Path) -> None:
    apply_definitions(node, read_document(path))
    log.info("loaded definitions from %s", path)


def apply_definitions(
    node: Node, document: dict[str, Any], undo: list[Callable[[], None]] | None = None,
    recovered: bool = False,
) -> None:
    """Create what the document defines. With `undo`, every change made is recorded there as a
    call that reverts it (in order), so that a caller can revert all if one entry fails; the
    policies, which change existing queues, come last, after everything that can fail.
    `recovered`: it is the broker's own definitions file, whose queues were accepted when
    declared and are not checked again."""
    record: Callable[[Callable[[], None]], Any] = (
        undo.append if undo is not None else lambda _action: None
    )
    access = node.access
    for entry in document.get("vhosts", []):
        existing = node.vhosts.get(entry["name"])
        if existing is None:
            vhost = node.add_vhost(entry["name"])
            record(partial(_forget_vhost, node, vhost))
        else:
            vhost = existing
            record(partial(_restore_metadata, vhost, vhost.description, list(vhost.tags),
                           vhost.default_queue_type))
        # RabbitMQ 3.10 reads "metadata" (its 3.11 export shape) and top-level description/tags.
        metadata = entry.get("metadata") or {}
        vhost.update_metadata(
            metadata.get("description", entry.get("description")),
            metadata.get("tags", entry.get("tags")), metadata.get("default_queue_type"),
        )
    for entry in document.get("users", []):
        user = _user(entry)
        record(partial(_restore, access.users, user.name, access.users.get(user.name)))
        access.add_user(user)
    for entry in document.get("permissions", []):
        key = (entry["user"], entry["vhost"])
        permission = Permission(entry["configure"], entry["write"], entry["read"])
        record(partial(_restore, access.permissions, key, access.permissions.get(key)))
        access.set_permissions(*key, permission)
    for entry in document.get("topic_permissions", []):
        topic_permission = TopicPermission(entry["user"], entry["vhost"], entry["exchange"],
                                           entry["write"], entry["read"])
        key = (topic_permission.user, topic_permission.vhost, topic_permission.exchange)
        record(partial(_restore, access.topic_permissions, key,
                       access.topic_permissions.get(key)))
        access.set_topic_permission(topic_permission)
    for entry in document.get("exchanges", []):
        vhost = node.add_vhost(entry.get("vhost", "/"))
        existed = entry["name"] in vhost.exchanges
        exchange = vhost.declare_exchange(
            entry["name"], entry.get("type", "direct"), passive=False,
            durable=entry.get("durable", True), auto_delete=entry.get("auto_delete", False),
            internal=entry.get("internal", False), arguments=entry.get("arguments", {}),
        )
        if not existed:
            record(partial(vhost.delete_exchange, exchange.name, False))
    for entry in document.get("queues", []):
        vhost = node.add_vhost(entry.get("vhost", "/"))
        existed = entry["name"] in vhost.queues
        queue = vhost.declare_queue(
            entry["name"], None, passive=False, durable=entry.get("durable", True),
            exclusive=False, auto_delete=entry.get("auto_delete", False),
            arguments=entry.get("arguments", {}), recovered=recovered,
        )
        if not existed:
            record(partial(vhost.delete_queue, queue))
    for entry in document.get("bindings", []):
        vhost = node.add_vhost(entry.get("vhost", "/"))
        source = vhost.get_exchange(entry["source"])
        if entry.get("destination_type", "queue") == "queue":
            destination = vhost.get_queue(entry["destination"])
        else:
            destination = vhost.get_exchange(entry["destination"])
        routing_key, arguments = entry.get("routing_key", ""), entry.get("arguments", {})
        if vhost.bind(source, destination, routing_key, arguments):
            record(partial(vhost.unbind, source, destination, routing_key, arguments))
    for entry in document.get("parameters", []):  # (the API's import refuses them first)
        component = entry.get("component")
        if component != OPERATOR_POLICY:
            raise DefinitionsError(
                f"parameter {entry.get('vhost', '/')}/{component}/{entry.get('name')}: component "
                f"{component} not found (operator policies are Warren's only runtime parameters)")
    for operator, entries in ((False, document.get("policies", [])), (True, [
            {"apply-to": UNDEFINED, **entry.get("value", {}), "vhost": entry.get("vhost", "/"),
             "name": entry.get("name")}
            for entry in document.get("parameters", [])
            if entry.get("component") == OPERATOR_POLICY])):
        policies: dict[str, list[Policy]] = {}
        for entry in entries:
            policies.setdefault(entry.get("vhost", "/"), []).append(_policy(entry))
        for name, listed in policies.items():
            vhost = node.add_vhost(name)
            table = vhost.operator_policies if operator else vhost.policies
            for policy in listed:
                record(partial(_restore_policy, vhost, policy.name, table.get(policy.name),
                               operator))
            vhost.set_policies(listed, operator)


def _restore_policy(vhost: VirtualHost, name: str, previous: Policy | None,
                    operator: bool) -> None:
    if previous is None:
        vhost.clear_policy(name, operator)
    else:
        vhost.set_policies([previous], operator)


def _forget_vhost(node: Node, vhost: VirtualHost) -> None:
    if node.vhosts.get(vhost.name) is vhost:
        node.delete_vhost(vhost)


def _restore_metadata(vhost: VirtualHost, description: str, tags: list[str],
                      default_queue_type: str | None) -> None:
    vhost.description, vhost.tags, vhost.default_queue_type = description, tags, default_queue_type


def _restore(table: dict, key: Any, previous: Any) -> None:
    if previous is None:
        table.pop(key, None)
    else:
        table[key] = previous


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
        "vhosts": [{"name": name, "limits": [], "metadata": vhost.metadata}
                   for name, vhost in node.vhosts.items()],
        "permissions": [
            {"user": user, "vhost": vhost, "configure": permission.configure,
             "write": permission.write, "read": permission.read}
            for (user, vhost), permission in access.permissions.items()
        ],
        "topic_permissions": [
            permission.as_definition() for permission in access.topic_permissions.values()
        ],
        "parameters": [
            operator_policy_parameter(policy)
            for vhost in node.vhosts.values() for policy in vhost.operator_policies.values()
        ],
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
                is_reserved(exchange.name)
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


def operator_policy_parameter(policy: Policy) -> dict[str, Any]:
    """An operator policy as RabbitMQ lists it among runtime parameters (/api/parameters,
    the definitions' "parameters")."""
    definition = policy.as_definition()
    keys = ("pattern", "definition", "priority") + (
        ("apply-to",) if policy.apply_to != UNDEFINED else ())  # (as it was set: none)
    return {"value": {key: definition[key] for key in keys},
            "vhost": policy.vhost, "component": OPERATOR_POLICY, "name": policy.name}


def definitions_bytes(node: Node) -> bytes:
    """The broker's own definitions file: its durable definitions, as storage writes them."""
    return json.dumps(export_definitions(node), indent=1).encode()


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
    except (KeyError, ValueError) as exc:  # InvalidPattern is a ValueError
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
