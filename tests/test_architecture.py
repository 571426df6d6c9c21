"""The house's rules, read from the code's own imports: floors, no circle, no upward arrow, public doors.

Floors, lowest first (a module may import its own package and the floors below, never above)::

    adapters  <  graphs  <  server.settings, server.telemetry  <  server.core  <  server.engine, server.mcp
              <  server.web  <  server.sandbox  <  server.process  <  server (the package), server.__main__

Across packages only public names are imported (a package's ``__init__``, or a module without a leading
underscore); ``_private`` modules are for their own package. Tests and benchmarks use the public API too.
`python -m tests.test_architecture` prints the import graph of server/ (modules, arrows, floors, largest).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adapters", "graphs", "server")
# The floor of each part; a module belongs to the longest prefix listed.
FLOORS: dict[str, int] = {
    "adapters": 0,
    "graphs": 1,
    "server.settings": 2,
    "server.telemetry": 2,
    "server.core": 3,
    "server.engine": 4,
    "server.mcp": 4,
    "server.web": 5,
    "server.sandbox": 6,
    "server.process": 7,
    "server": 8,
}
# Reaching into another package's private module, allowed here only, each with its reason.
PRIVATE_DOORS = {
    # The SDK's private parts are pinned by this test against the installed SDK (server/mcp/_sdk.py).
    ("tests.server.test_sdk_private", "server.mcp._sdk"),
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*tops: str) -> dict[str, Path]:
    """Every module under the given top-level folders, by dotted name."""
    return {_name(p): p for top in tops for p in sorted((ROOT / top).rglob("*.py"))}


def imported(path: Path, name: str) -> Iterator[str]:
    """The dotted names a module imports (``from a import b`` yields ``a`` and ``a.b``), typing-only included."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package[: len(package) - node.level + 1], *([node.module] if node.module else [])]
                )
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The known module a dotted import name lands in (the longest known prefix), or None."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the known modules it imports (itself and its own parent packages left out)."""
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        deps = {resolve(t, known) for t in imported(path, name)}
        out[name] = {d for d in deps if d is not None and d != name and not name.startswith(d + ".")}
    return out


def floor(name: str) -> int:
    """The floor of a module of adapters, graphs or server."""
    best = max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len)
    return FLOORS[best]


def part(name: str) -> str:
    """The part (as listed in FLOORS) a module belongs to."""
    return max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in g:
        if v not in index:
            visit(v)
    return found


def _private_door(source: str, target: str) -> bool:
    """True when `source` imports a ``_private`` module of another package."""
    parts = target.split(".")
    for i, piece in enumerate(parts):
        if piece.startswith("_") and piece != "__main__":
            owner = ".".join(parts[:i])
            return not (source == owner or source.startswith(owner + "."))
    return False


def test_no_import_circle() -> None:
    """No module of adapters, graphs or server imports one that (through others) imports it back."""
    assert cycles(graph(modules(*PACKAGES))) == []


def test_no_upward_arrow() -> None:
    """Every import goes to the module's own part or a lower floor."""
    g = graph(modules(*PACKAGES))
    upward = sorted(
        f"{a} (floor {floor(a)}) -> {b} (floor {floor(b)})"
        for a, deps in g.items()
        for b in deps
        if part(a) != part(b) and floor(b) >= floor(a)
    )
    assert upward == []


def test_packages_are_entered_by_their_public_doors() -> None:
    """Across packages, and from tests and benchmarks, only public modules are imported."""
    known = modules(*PACKAGES, "tests", "bench")
    reached = sorted(
        f"{name} -> {target}"
        for name, path in known.items()
        for target in imported(path, name)
        if target.split(".")[0] in PACKAGES
        and _private_door(name, target)
        and (name, resolve(target, known)) not in PRIVATE_DOORS
    )
    assert reached == []


def _height(g: dict[str, set[str]]) -> int:
    depth: dict[str, int] = {}

    def height(v: str) -> int:
        if v not in depth:
            depth[v] = 0  # a circle (there is none: see the tests) would stop here
            depth[v] = 1 + max((height(w) for w in g[v]), default=0)
        return depth[v]

    return max(height(v) for v in g)


def _through_doors(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules that define what it imports: a name taken from a package's ``__init__`` (a door
    that re-exports) counts as an arrow to the module behind the door that defines it."""
    doors = {n for n, p in known.items() if p.name == "__init__.py"}
    exported: dict[str, dict[str, str]] = {}  # door -> name -> the module it comes from
    for door in doors:
        tree = ast.parse(known[door].read_text())
        exported[door] = {
            a.asname or a.name: resolve(f"{node.module}.{a.name}", known) or node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            for a in node.names
        }

    def behind(target: str) -> str | None:
        door, _, name = target.rpartition(".")
        seen = 0
        while door in doors and name in exported[door] and seen < 10:
            hop = exported[door][name]
            if hop not in doors:
                return hop
            door, seen = hop, seen + 1
        return resolve(target, known)

    out: dict[str, set[str]] = {}
    for name, path in known.items():
        if name in doors:
            continue
        deps = {behind(t) for t in imported(path, name)}
        out[name] = {d for d in deps if d is not None and d != name and d not in doors}
    return out


def summary(top: str = "server") -> str:
    """Modules, lines, arrows, floors (the longest chain of imports) and the largest module of `top`; floors
    counted by module, by module through the packages' doors, and by part (FLOORS)."""
    known = modules(top)
    g = graph(known)
    inner = _through_doors(known)
    parts: dict[str, set[str]] = {}
    for a, deps in g.items():
        parts.setdefault(part(a), set()).update(part(b) for b in deps if part(b) != part(a))
    lines = {n: len(p.read_text().splitlines()) for n, p in known.items()}
    largest = max(lines, key=lambda n: lines[n])
    return (
        f"{top}/: {len(known)} modules, {sum(lines.values())} lines, {sum(len(d) for d in g.values())} arrows "
        f"({sum(len(d) for d in inner.values())} between modules through the doors), {len(cycles(g))} circles; "
        f"floors: {_height(g)} by module, {_height(inner)} through the doors, {_height(parts)} by part; "
        f"largest module {largest} ({lines[largest]} lines)"
    )


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "server"))
