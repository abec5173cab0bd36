"""`warren ctl`: rabbitmqctl's everyday commands, run against the management HTTP API.

Output is tab-separated with a header row, like rabbitmqctl's tables; `--json` prints the API's
JSON instead. Exit codes: 0 done, 1 the broker refused (the reason is printed), 64 bad usage,
69 the broker could not be reached.

Credentials: --user/--password (or $WARREN_CTL_USER/$WARREN_CTL_PASSWORD) when given; else,
beside the broker (a loopback URL and its data dir readable), the broker's local administration
secret (management/local_admin.py), as rabbitmqctl uses the node's cookie; else the broker's
default user ($WARREN_DEFAULT_USER/$WARREN_DEFAULT_PASS, or guest/guest).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from management import local_admin

EX_USAGE, EX_UNAVAILABLE = 64, 69

LIST_COLUMNS = {
    "list_queues": ("queues", ["name", "messages"]),
    "list_exchanges": ("exchanges", ["name", "type"]),
    "list_bindings": ("bindings", ["source", "destination_type", "destination", "routing_key"]),
    "list_connections": ("connections", ["name", "user", "vhost", "channels"]),
    "list_consumers": ("consumers", ["queue.name", "channel_details.name", "consumer_tag",
                                     "ack_required", "prefetch_count"]),
    "list_users": ("users", ["name", "tags"]),
    "list_vhosts": ("vhosts", ["name"]),
    "list_policies": ("policies", ["name", "pattern", "apply-to", "definition", "priority"]),
    "list_operator_policies": ("operator-policies", ["name", "pattern", "apply-to", "definition",
                                                     "priority"]),
    "list_topic_permissions": ("topic-permissions", ["user", "exchange", "write", "read"]),
}


class CtlError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Api:
    def __init__(self, url: str, auth: str, cacert: str | None = None,
                 refused_hint: str = "") -> None:
        """`auth` is the Authorization header's value; `refused_hint` is added to a 401."""
        self.url = url.rstrip("/")
        self.auth, self.refused_hint = auth, refused_hint
        # For an HTTPS management port whose certificate is signed by a private CA.
        self.tls = ssl.create_default_context(cafile=cacert) if cacert else None

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self.auth)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                payload = response.read()
        except urllib.error.HTTPError as failure:
            hint = self.refused_hint if failure.code == 401 else ""
            raise CtlError(_reason(failure) + hint) from None
        except OSError as failure:
            raise CtlError(f"cannot reach the broker at {self.url}: {failure}",
                           EX_UNAVAILABLE) from None
        return json.loads(payload) if payload else None


def _reason(failure: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(failure.read() or b"{}")
    except ValueError:
        body = {}
    reason = body.get("reason") or failure.reason
    return f"{failure.code} {body.get('error', '')}: {reason}".replace(" : ", ": ")


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# Columns rabbitmqctl prints as Erlang lists: a quorum queue's `[rabbit@node]`.
ERLANG_LIST_COLUMNS = ("members", "online")


def _cell(item: dict[str, Any], column: str) -> str:
    value: Any = item
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list) and column in ERLANG_LIST_COLUMNS:
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def print_table(items: list[dict[str, Any]], columns: list[str]) -> None:
    print("\t".join(columns))
    for item in items:
        print("\t".join(_cell(item, column) for column in columns))


def parser() -> argparse.ArgumentParser:
    env = os.environ
    top = argparse.ArgumentParser(prog="warren ctl", description=__doc__.split("\n\n")[0])
    # Beside the broker (in its container, say) the broker's own variables are good defaults.
    local_url = f"http://localhost:{env.get('WARREN_MANAGEMENT_PORT', '15672')}"
    top.add_argument("--url", default=env.get("WARREN_MANAGEMENT_URL", local_url),
                     help="management API (default http://localhost:$WARREN_MANAGEMENT_PORT or "
                     "15672; $WARREN_MANAGEMENT_URL)")
    top.add_argument("--user", "-u", dest="api_user", default=env.get("WARREN_CTL_USER"),
                     help="management user ($WARREN_CTL_USER; default: the local "
                     "administration secret in the data dir, else $WARREN_DEFAULT_USER or "
                     "guest)")
    top.add_argument("--password", dest="api_password", default=env.get("WARREN_CTL_PASSWORD"),
                     help="its password ($WARREN_CTL_PASSWORD; default $WARREN_DEFAULT_PASS "
                     "or guest)")
    top.add_argument("--data-dir", default=env.get("WARREN_DATA_DIR", "data"),
                     help="the broker's data dir, where its local administration secret is "
                     "(default $WARREN_DATA_DIR or data)")
    top.add_argument("--cacert", default=env.get("WARREN_CTL_CACERT"),
                     help="CA certificate (PEM) to verify an https:// --url with "
                     "($WARREN_CTL_CACERT)")
    top.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, vhost: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        if vhost:
            sub.add_argument("-p", "--vhost", default="/", help="virtual host (default /)")
        return sub

    for name, (resource, _) in LIST_COLUMNS.items():
        sub = command(name, f"list {resource} (columns may be given)",
                      vhost=resource not in ("users", "vhosts"))
        sub.add_argument("columns", nargs="*")
    sub = command("add_user", "create a user")
    sub.add_argument("name")
    sub.add_argument("password")
    sub.add_argument("--tags", default="", help="comma-separated, e.g. administrator")
    command("delete_user", "delete a user").add_argument("name")
    sub = command("set_permissions", "set a user's permissions in a vhost", vhost=True)
    for argument in ("user", "configure", "write", "read"):
        sub.add_argument(argument)
    sub = command("set_topic_permissions",
                  "set a user's topic permissions for one topic exchange of a vhost", vhost=True)
    for argument in ("user", "exchange", "write", "read"):
        sub.add_argument(argument)
    sub = command("clear_topic_permissions",
                  "remove all of a user's topic permissions in a vhost", vhost=True)
    sub.add_argument("user")
    sub.add_argument("exchange", nargs="?", help="not supported: the management API removes "
                     "a user's topic permissions for every exchange of the vhost at once")
    command("add_vhost", "create a vhost").add_argument("name")
    command("delete_vhost", "delete a vhost and everything in it").add_argument("name")
    for kind, what in (("policy", "a policy"), ("operator_policy", "an operator policy (limits "
                       "a policy cannot raise: expires, message-ttl, max-length, "
                       "max-length-bytes, delivery-limit, max-in-memory-length, "
                       "max-in-memory-bytes)")):
        sub = command(f"set_{kind}", f"set {what}", vhost=True)
        sub.add_argument("name")
        sub.add_argument("pattern")
        sub.add_argument("definition", help="JSON object, e.g. '{\"max-length\": 1000}'")
        sub.add_argument("--priority", type=int, default=0)
        sub.add_argument("--apply-to", default="all", choices=["queues", "exchanges", "all"])
        command(f"clear_{kind}", f"remove {what.split(' (')[0]}", vhost=True).add_argument(
            "name")
    command("trace_on", "start the firehose: copy every publish and delivery of the vhost to "
            "its amq.rabbitmq.trace exchange (until trace_off or a restart)", vhost=True)
    command("trace_off", "stop the firehose of the vhost", vhost=True)
    command("purge_queue", "remove a queue's ready messages", vhost=True).add_argument("name")
    command("delete_queue", "delete a queue", vhost=True).add_argument("name")
    command("export_definitions", "write definitions JSON to a file (- = stdout)").add_argument(
        "file")
    command("import_definitions", "load definitions JSON from a file (- = stdin)").add_argument(
        "file")
    sub = command("close_connection", "close a client connection (320 CONNECTION_FORCED)")
    sub.add_argument("name")
    sub.add_argument("reason", nargs="?", default="Closed via warren ctl")
    command("cluster_status", "the cluster's name and nodes with their roles (leader or "
            "follower)")
    sub = command("set_vm_memory_high_watermark",
                  "set the memory alarm threshold until the broker restarts: a fraction of "
                  "memory, or 'absolute <value>' with units, e.g. 'absolute 1GB'")
    sub.add_argument("value", nargs="+", metavar="<fraction> | absolute <value>")
    sub = command("set_disk_free_limit",
                  "set the free disk space alarm threshold until the broker restarts: a size "
                  "with units, e.g. 1GB, or 'mem_relative <fraction>' of memory")
    sub.add_argument("value", nargs="+", metavar="<disk_limit> | mem_relative <fraction>")
    return top


def _fraction(text: str, low: float, high: float | None, message: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CtlError(message, EX_USAGE) from None
    if value < low or (high is not None and value > high):
        raise CtlError(message, EX_USAGE)
    return value


def _node_setting(api: Api, name: str, values: list[str]) -> None:
    """set_vm_memory_high_watermark / set_disk_free_limit, as rabbitmqctl takes them."""
    node = api.call("GET", "/api/nodes")[0]["name"]
    if name == "set_vm_memory_high_watermark":
        if values[0] == "absolute" and len(values) == 2:
            body, banner = {"absolute": values[1]}, f"{values[1]} bytes"
        elif len(values) == 1:
            fraction = _fraction(values[0], 0.0, 1.0,
                                 "The threshold should be a fraction between 0.0 and 1.0")
            body, banner = {"fraction": fraction}, values[0]
        else:
            raise CtlError("usage: set_vm_memory_high_watermark <fraction> | absolute <value>",
                           EX_USAGE)
        print(f"Setting memory threshold on {node} to {banner} ...")
        api.call("PUT", f"/api/nodes/{quote(node)}/memory-high-watermark", body)
        return
    if values[0] == "mem_relative" and len(values) == 2:
        fraction = _fraction(values[1], 0.0, None, "mem_relative takes a fraction >= 0")
        body, banner = {"mem_relative": fraction}, f"{values[1]} times the total RAM"
    elif len(values) == 1:
        body, banner = {"limit": values[0]}, f"{values[0]} bytes"
    else:
        raise CtlError("usage: set_disk_free_limit <disk_limit> | mem_relative <fraction>",
                       EX_USAGE)
    print(f"Setting disk free limit on {node} to {banner} ...")
    api.call("PUT", f"/api/nodes/{quote(node)}/disk-free-limit", body)


def connect(args: argparse.Namespace, env: dict[str, str]) -> Api:
    """The API with the credentials the module docstring says, in that order."""
    if args.api_user is None and args.api_password is None and local_admin.is_local_url(
            args.url):
        secret = local_admin.read_secret(args.data_dir)
        if secret is not None:
            path = local_admin.secret_path(args.data_dir)
            return Api(args.url, local_admin.header_value(secret), args.cacert,
                       f" (sent the local administration secret of {path}: is the broker at "
                       f"{args.url} the one using that data dir? Else give --user and "
                       "--password)")
    user = args.api_user if args.api_user is not None else env.get("WARREN_DEFAULT_USER",
                                                                    "guest")
    password = args.api_password if args.api_password is not None else env.get(
        "WARREN_DEFAULT_PASS", "guest")
    return Api(args.url, basic_auth(user, password), args.cacert)


def run(args: argparse.Namespace) -> None:
    api = connect(args, dict(os.environ))
    name = args.command
    vhost = quote(getattr(args, "vhost", "/"))
    if name in LIST_COLUMNS:
        resource, default_columns = LIST_COLUMNS[name]
        if resource in ("connections", "topic-permissions"):
            path = f"/api/vhosts/{vhost}/{resource}"
        else:
            path = f"/api/{resource}" + (f"/{vhost}" if hasattr(args, "vhost") else "")
        items = api.call("GET", path)
        if args.json:
            print(json.dumps(items, indent=2))
        else:
            print_table(items, args.columns or default_columns)
        return
    if name == "add_user":
        api.call("PUT", f"/api/users/{quote(args.name)}",
                 {"password": args.password, "tags": args.tags})
    elif name == "delete_user":
        api.call("DELETE", f"/api/users/{quote(args.name)}")
    elif name == "set_permissions":
        api.call("PUT", f"/api/permissions/{vhost}/{quote(args.user)}",
                 {"configure": args.configure, "write": args.write, "read": args.read})
    elif name == "set_topic_permissions":
        api.call("PUT", f"/api/topic-permissions/{vhost}/{quote(args.user)}",
                 {"exchange": args.exchange, "write": args.write, "read": args.read})
    elif name == "clear_topic_permissions":
        if args.exchange is not None:
            raise CtlError("clearing one exchange's topic permissions is not supported (the "
                           "management API has no per-exchange delete); clear the user's "
                           "topic permissions in the vhost and set the others again", EX_USAGE)
        api.call("DELETE", f"/api/topic-permissions/{vhost}/{quote(args.user)}")
    elif name == "add_vhost":
        api.call("PUT", f"/api/vhosts/{quote(args.name)}", {})
    elif name == "delete_vhost":
        api.call("DELETE", f"/api/vhosts/{quote(args.name)}")
    elif name in ("set_policy", "set_operator_policy"):
        try:
            definition = json.loads(args.definition)
        except ValueError as exc:
            raise CtlError(f"definition is not JSON: {exc}", EX_USAGE) from None
        api.call("PUT", f"/api/{_policies(name)}/{vhost}/{quote(args.name)}", {
            "pattern": args.pattern, "definition": definition, "priority": args.priority,
            "apply-to": args.apply_to,
        })
    elif name in ("clear_policy", "clear_operator_policy"):
        api.call("DELETE", f"/api/{_policies(name)}/{vhost}/{quote(args.name)}")
    elif name in ("trace_on", "trace_off"):
        _trace(api, args.vhost, name == "trace_on")
    elif name == "purge_queue":
        api.call("DELETE", f"/api/queues/{vhost}/{quote(args.name)}/contents")
    elif name == "delete_queue":
        api.call("DELETE", f"/api/queues/{vhost}/{quote(args.name)}")
    elif name == "export_definitions":
        text = json.dumps(api.call("GET", "/api/definitions"), indent=2)
        if args.file == "-":
            print(text)
        else:
            with open(args.file, "w") as file:
                file.write(text + "\n")
    elif name == "import_definitions":
        try:
            if args.file == "-":
                text = sys.stdin.read()
            else:
                with open(args.file) as file:
                    text = file.read()
            document = json.loads(text)
        except (OSError, ValueError) as exc:
            raise CtlError(f"cannot read definitions: {exc}", EX_USAGE) from None
        api.call("POST", "/api/definitions", document)
    elif name == "close_connection":
        api.call("DELETE", f"/api/connections/{quote(args.name)}",
                 headers={"X-Reason": args.reason})
    elif name in ("set_vm_memory_high_watermark", "set_disk_free_limit"):
        _node_setting(api, name, args.value)
    elif name == "cluster_status":
        _cluster_status(api, args.json)


def _policies(command: str) -> str:
    """The API resource of a set_/clear_ policy or operator policy command."""
    return "operator-policies" if command.endswith("operator_policy") else "policies"


def _trace(api: Api, vhost: str, enabled: bool) -> None:
    """trace_on / trace_off, said as rabbitmqctl says them. The API's PUT would create a
    missing vhost, so a vhost that does not exist is refused here (rabbitmqctl records the
    name, to trace a vhost of that name once it is made)."""
    print(f'{"Starting" if enabled else "Stopping"} tracing for vhost "{vhost}" ...')
    path = f"/api/vhosts/{quote(vhost)}"
    try:
        api.call("GET", path)
    except CtlError as failure:
        if str(failure).startswith("404"):
            raise CtlError(f"virtual host '{vhost}' does not exist") from None
        raise
    api.call("PUT", path, {"tracing": enabled})
    print(f"Trace {'enabled' if enabled else 'disabled'} for vhost {vhost}")


def _cluster_status(api: Api, as_json: bool) -> None:
    """`Cluster name` and one line per node (name, running, role), from /api/overview and
    /api/nodes; a single node shows as the cluster of one it is, with no role."""
    cluster = api.call("GET", "/api/cluster-name")["name"]
    nodes = api.call("GET", "/api/nodes")
    if as_json:
        print(json.dumps({"cluster_name": cluster, "nodes": [
            {key: node.get(key) for key in ("name", "running", "cluster_role")}
            for node in nodes]}, indent=2))
        return
    print(f"Cluster status of {cluster} ...")
    print_table(nodes, ["name", "running", "cluster_role"])


def main(argv: list[str]) -> int:
    arguments = parser()
    try:
        args = arguments.parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else EX_USAGE
    try:
        run(args)
    except CtlError as failure:
        print(f"Error: {failure}", file=sys.stderr)
        return failure.code
    return 0
