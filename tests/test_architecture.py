"""The import graph of Warren's packages, checked against the rooms of docs/architecture.md.

Every `import` and `from ... import` in protocol/, storage/, broker/ and management/ counts,
wherever it stands: at module level, inside a function, or under `if TYPE_CHECKING:` (a type
import is still a dependency a reader must follow). The graph is read with `ast`, nothing is
imported, so a broken module cannot hide an edge.

Issue 12 sets the target (TARGET_*): protocol/ and storage/ import nothing from broker/ or
management/, and no import cycle spans more than six modules. Today's code is far from it, so
the tests hold a ratchet (CURRENT_*): they fail when the graph gets worse than the recorded
state, and also when it gets better, so the one who improves it lowers the recorded numbers in
the same commit and nobody can slide back. When CURRENT_* equals TARGET_* the ratchet is done.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "storage", "broker", "management")

# --- the rules, as data ---------------------------------------------------------------------

# A module of the key's package may not import a module of these packages.
FORBIDDEN = {
    "protocol": ("broker", "management"),
    "storage": ("broker", "management"),
}
TARGET_FORBIDDEN_IMPORTS: frozenset[tuple[str, str]] = frozenset()
TARGET_LARGEST_CYCLE = 6

# --- the ratchet: today's state; lower it as the redesign of issue 12 lands -----------------

CURRENT_FORBIDDEN_IMPORTS: frozenset[tuple[str, str]] = frozenset()  # storage/ is done
# The largest cycle is the AMQP adapter's own: .channel, .connection, .delivering,
# .publishing, .topology (type imports between the channel and its collaborators); the core
# imports no adapter (broker/clients.py protocols, consumer.DeliveryTarget).
CURRENT_LARGEST_CYCLE = 5


# --- the walker -----------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of PACKAGES (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name `module` imports (relative imports made absolute); for
    `from a import b` both `a` and `a.b`, since b may be a submodule."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of PACKAGES it imports (the most specific module a name names)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    return graph


def forbidden_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ())
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative):
    each is a set of modules that all reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=len, reverse=True)


def describe_cycle(component: list[str]) -> str:
    return f"{len(component)} modules: " + ", ".join(component)


# --- the tests --------------------------------------------------------------------------------


def test_walker_sees_relative_and_type_checking_imports():
    """The walker itself: a relative import under TYPE_CHECKING is an edge."""
    graph = import_graph()
    # broker/exchanges/base.py imports `..message` only for type hints.
    source = (REPO_ROOT / "broker" / "exchanges" / "base.py").read_text()
    assert "if TYPE_CHECKING:" in source
    assert "broker.message" in graph["broker.exchanges.base"]
    assert "protocol.constants" in graph["protocol.codec"]


def test_no_new_import_from_protocol_or_storage_into_broker_or_management():
    found = forbidden_imports(import_graph())
    new = sorted(found - CURRENT_FORBIDDEN_IMPORTS)
    gone = sorted(CURRENT_FORBIDDEN_IMPORTS - found)
    listing = "\n".join(f"  {a} -> {b}" for a, b in sorted(found)) or "  (none)"
    assert not new, (
        f"new imports that break the rooms (protocol/, storage/ must not import broker/, "
        f"management/): {new}\nall forbidden imports today:\n{listing}")
    assert not gone, (
        f"these forbidden imports are gone, well done: remove them from "
        f"CURRENT_FORBIDDEN_IMPORTS (target: {sorted(TARGET_FORBIDDEN_IMPORTS)}): {gone}\n"
        f"all forbidden imports today:\n{listing}")


def test_largest_import_cycle_does_not_grow():
    found = cycles(import_graph())
    largest = len(found[0]) if found else 0
    listing = "\n".join("  " + describe_cycle(component) for component in found) or "  (none)"
    assert largest <= CURRENT_LARGEST_CYCLE, (
        f"the largest import cycle grew from {CURRENT_LARGEST_CYCLE} to {largest} modules "
        f"(target: at most {TARGET_LARGEST_CYCLE}); cycles today:\n{listing}")
    assert largest == CURRENT_LARGEST_CYCLE, (
        f"the largest import cycle shrank from {CURRENT_LARGEST_CYCLE} to {largest} modules: "
        f"lower CURRENT_LARGEST_CYCLE to {largest} (target: at most {TARGET_LARGEST_CYCLE}); "
        f"cycles today:\n{listing}")


def test_protocol_is_sans_io():
    """protocol/ (codec, session) takes bytes and gives bytes and actions: no event loop, no
    socket, no thread of its own, so that it runs the same under any front and in tests."""
    io_modules = {"asyncio", "socket", "ssl", "selectors", "threading", "uvloop"}
    files = module_files()
    found = {
        (module, name.split(".")[0])
        for module, path in files.items() if module.split(".")[0] == "protocol"
        for name in imported_names(module, path) if name.split(".")[0] in io_modules
    }
    assert not found, f"protocol/ imports I/O modules: {sorted(found)}"
