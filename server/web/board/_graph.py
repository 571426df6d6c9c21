"""The board's picture of a workflow: its compiled LangGraph graph laid out in layers, as SVG, and
each node's state (done / running / failed / waiting) read from the workflow's step events."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from html import escape
from typing import Any

from adapters import Status
from graphs import WORKFLOWS

__all__ = ["GraphPicture", "node_states", "picture", "timeline"]

_W, _H, _GAP_X, _GAP_Y, _PAD = 150, 28, 18, 22, 10


@dataclass(frozen=True)
class GraphPicture:
    """A laid-out graph: the SVG (node states are CSS classes the page sets) and the node names."""

    svg: str
    nodes: tuple[str, ...]


def _layers(nodes: list[str], edges: list[tuple[str, str, bool]]) -> dict[str, int]:
    """Longest-path layering from ``__start__`` once the loops' back edges are set aside."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t, _ in edges:
        out[s].append(t)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(n: str) -> None:  # iterative enough: graphs here have tens of nodes
        state[n] = 1
        for t in out[n]:
            if state.get(t) == 1:
                back.add((n, t))
            elif t not in state:
                visit(t)
        state[n] = 2

    for root in ["__start__", *nodes]:
        if root not in state:
            visit(root)
    order: list[str] = []
    seen: set[str] = set()

    def topo(n: str) -> None:
        seen.add(n)
        for t in out[n]:
            if (n, t) not in back and t not in seen:
                topo(t)
        order.append(n)

    for n in nodes:
        if n not in seen:
            topo(n)
    layer = dict.fromkeys(nodes, 0)
    for n in reversed(order):
        for t in out[n]:
            if (n, t) not in back:
                layer[t] = max(layer[t], layer[n] + 1)
    return layer


@functools.cache
def picture(workflow: str) -> GraphPicture:
    """The workflow's graph as an SVG drawing (computed once per workflow per process).

    Raises:
        KeyError: unknown workflow name.
    """
    graph = WORKFLOWS[workflow].build().compile().get_graph()
    nodes = list(graph.nodes)
    edges = [(e.source, e.target, bool(e.conditional)) for e in graph.edges]
    layer = _layers(nodes, edges)
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(layer[n], []).append(n)
    widest = max(len(r) for r in rows.values())
    width = widest * (_W + _GAP_X) - _GAP_X + 2 * _PAD + 60
    height = len(rows) * (_H + _GAP_Y) - _GAP_Y + 2 * _PAD
    pos: dict[str, tuple[float, float]] = {}
    for depth, row in rows.items():
        span = len(row) * (_W + _GAP_X) - _GAP_X
        x0 = (width - 60 - span) / 2
        for i, n in enumerate(row):
            pos[n] = (x0 + i * (_W + _GAP_X), _PAD + depth * (_H + _GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" class="graph" '
        f'aria-label="graph of {escape(workflow)}: {len(nodes) - 2} steps">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    for s, t, conditional in edges:
        (sx, sy), (tx, ty) = pos[s], pos[t]
        dash = ' stroke-dasharray="4 3"' if conditional else ""
        if layer[t] > layer[s]:
            x1, y1, x2, y2 = sx + _W / 2, sy + _H, tx + _W / 2, ty
            d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{y1 + 18:.0f} {x2:.0f},{y2 - 18:.0f} {x2:.0f},{y2:.0f}"
        else:  # a loop back: around the right side
            x1, y1, x2, y2 = sx + _W, sy + _H / 2, tx + _W, ty + _H / 2
            bulge = max(x1, x2) + 40
            d = f"M{x1:.0f},{y1:.0f} C{bulge:.0f},{y1:.0f} {bulge:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        parts.append(f'<path class="edge" d="{d}"{dash} marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = pos[n]
        label = {"__start__": "start", "__end__": "end"}.get(n, n.replace("_", " "))
        parts.append(
            f'<g class="node" data-node="{escape(n)}"><title>{escape(n)}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{_W}" height="{_H}" rx="6"/>'
            f'<text x="{x + _W / 2:.0f}" y="{y + _H / 2 + 4:.0f}" text-anchor="middle">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return GraphPicture(svg="".join(parts), nodes=tuple(n for n in nodes if not n.startswith("__")))


def node_states(events: list[dict[str, Any]], status: str, step: str = "") -> dict[str, str]:
    """Each step's state from the step events: done, running, failed, or waiting (the step a decision
    stopped, or any unfinished step of a workflow that is not running)."""
    running: dict[str, int] = {}
    last: dict[str, str] = {}
    for e in events:
        name = (e.get("data") or {}).get("step")
        if not name:
            continue
        what = e.get("what")
        if what == "step.started":
            running[name] = running.get(name, 0) + 1
        elif what in {"step.finished", "step.failed"}:
            running[name] = max(0, running.get(name, 0) - 1)
            last[name] = "failed" if what == "step.failed" else "done"
    states = dict(last)
    for name, count in running.items():
        if count > 0:
            states[name] = "running" if status == Status.RUNNING else "waiting"
    if status == Status.WAITING_DECISION and step:
        states[step] = "waiting"
    if status == Status.COMPLETED:
        states["__start__"] = states["__end__"] = "done"
    elif events:
        states["__start__"] = "done"
    return states


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps in the order they first started, with first start, last end, runs and outcome."""
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        step = (e.get("data") or {}).get("step")
        if not step:
            continue
        row = rows.setdefault(step, {"step": step, "start": e["when"], "end": None, "runs": 0, "failed": 0})
        if e.get("what") == "step.started":
            row["runs"] += 1
        else:
            row["end"] = e["when"]
            row["failed"] += e.get("what") == "step.failed"
    return list(rows.values())
