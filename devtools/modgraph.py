"""The product's module graph, measured: modules, internal imports, levels, import circles,
upward imports (against the declared layers below) and the places that open a database
connection. `python -m devtools.modgraph [--json]`; tests/test_layout.py uses the same."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("jobstore", "capture")
# The layers, most foundational first; a module is in the last layer whose prefix it has.
# An import from a module to one in a higher layer is an upward import.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "jobstore.errors",
        "jobstore.secret",
        "jobstore.domain",
        "jobstore.spec",
        "jobstore.routing",
        "jobstore.rollout",
    ),
    ("jobstore.",),
    ("jobstore",),  # the front door, above every module it names
    ("capture.errors", "capture.settings", "capture.records", "capture.github.cost"),
    ("capture.github",),
    (
        "capture.fetch",
        "capture.storage",
        "capture.webhooks.payloads",
        "capture.webhooks.deliveries",
        "capture.webhooks.receiver",
    ),
    ("capture.handlers", "capture.webhooks.riders"),
    (
        "capture.attempt",
        "capture.worker",
        "capture.freshness",
        "capture.intake",
        "capture.webhooks.planner",
        "capture.webhooks.reconcile",
    ),
    ("capture.ops", "capture.inngest_function", "capture.webhooks"),
    ("capture.api",),
    ("capture.serving",),
    ("capture.cli",),
    ("capture",),  # the package's front door
)
CONNECTS = ("psycopg.connect(", "Connection.connect(", "ConnectionPool(")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def exports(mods: dict[str, Path]) -> dict[tuple[str, str], str]:
    """(package, name) -> the module a package's front door takes `name` from, so that
    `from jobstore import JobStore` counts as depending on jobstore.store, not on all of
    the front door."""
    found: dict[tuple[str, str], str] = {}
    for name, path in mods.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    source = f"{node.module}.{alias.name}"
                    source = source if source in mods else node.module
                    found[(name, alias.asname or alias.name)] = source
    return found


def imports(path: Path, known: dict[str, Path], through: dict[tuple[str, str], str]) -> set[str]:
    """The product modules `path` imports (a `from package import name` that names a
    submodule counts as importing the submodule; one a front door re-exports, as
    importing the module it comes from)."""
    found: set[str] = set()
    own = module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    found.add(full)
                elif (node.module, alias.name) in through and not own.startswith(node.module):
                    found.add(through[(node.module, alias.name)])
                elif node.module in known:
                    found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    through = exports(mods)
    return {name: imports(path, mods, through) - {name} for name, path in mods.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def levels(edges: dict[str, set[str]]) -> tuple[int, list[str]]:
    """The longest import chain (modules in a circle count once each way round)."""
    memo: dict[str, list[str]] = {}
    visiting: set[str] = set()

    def chain(node: str) -> list[str]:
        if node in memo:
            return memo[node]
        visiting.add(node)
        best: list[str] = []
        for target in sorted(edges.get(node, ())):
            if target in visiting:
                continue
            candidate = chain(target)
            if len(candidate) > len(best):
                best = candidate
        visiting.discard(node)
        memo[node] = [node, *best]
        return memo[node]

    longest = max((chain(n) for n in sorted(edges)), key=len, default=[])
    return len(longest), longest


def layer(module: str) -> int:
    """The rank of the longest prefix in LAYERS that names `module` (a package's front
    door, `jobstore` or `capture`, only by its exact name)."""
    best, rank_of_best = "", 0
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix.endswith("."):
                matches = module.startswith(prefix)
            elif prefix in PRODUCT:
                matches = module == prefix
            else:
                matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > len(best):
                best, rank_of_best = prefix, rank
    return rank_of_best


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports against the layers (a package's front door naming its own modules is not)."""
    return sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if layer(b) > layer(a) and not b.startswith(a + ".")
    )


def connection_sites() -> list[str]:
    """Lines of product code that open a PostgreSQL connection or pool."""
    sites = []
    for name, path in modules().items():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if any(marker in line for marker in CONNECTS) and not line.strip().startswith("#"):
                sites.append(f"{name}:{number}")
    return sites


def measure() -> dict:
    edges = graph()
    depth, chain = levels(edges)
    return {
        "modules": len(edges),
        "internal_imports": sum(len(t) for t in edges.values()),
        "levels": depth,
        "longest_chain": chain,
        "circles": circles(edges),
        "upward_imports": [f"{a} -> {b}" for a, b in upward(edges)],
        "connection_sites": connection_sites(),
    }


def main(argv: list[str]) -> None:
    found = measure()
    if "--json" in argv:
        print(json.dumps(found))
        return
    for key in ("modules", "internal_imports", "levels"):
        print(f"{key:18} {found[key]}")
    print(f"{'longest chain':18} {' -> '.join(found['longest_chain'])}")
    print(f"{'circles':18} {len(found['circles'])}")
    for circle in found["circles"]:
        print(f"  {' <-> '.join(circle)}")
    print(f"{'upward imports':18} {len(found['upward_imports'])}")
    for edge in found["upward_imports"]:
        print(f"  {edge}")
    print(f"{'connection sites':18} {len(found['connection_sites'])}")
    for site in found["connection_sites"]:
        print(f"  {site}")


if __name__ == "__main__":
    main(sys.argv[1:])
