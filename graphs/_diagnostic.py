"""`diagnostic_linear`: ten steps that each add one, for measuring the engine itself (no outside calls)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from adapters import tracing

__all__ = ["DIAGNOSTIC_STEPS", "build_diagnostic_linear"]

DIAGNOSTIC_STEPS = 10


class DiagnosticState(TypedDict, total=False):
    """State of the diagnostic graph."""

    project_id: str
    brief: str
    options: dict[str, Any]
    n: int


async def _step(state: DiagnosticState) -> DiagnosticState:
    # async: LangGraph runs a sync node in a thread pool under astream, a hop that costs more than the step.
    return {"n": state.get("n", 0) + 1}


def build_diagnostic_linear() -> StateGraph[DiagnosticState, Any, Any, Any]:
    """The uncompiled diagnostic graph."""
    b: StateGraph[DiagnosticState, Any, Any, Any] = StateGraph(DiagnosticState)
    for i in range(DIAGNOSTIC_STEPS):
        b.add_node(f"n{i}", tracing.traced_node(f"n{i}", _step))
    b.add_edge(START, "n0")
    for i in range(DIAGNOSTIC_STEPS - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{DIAGNOSTIC_STEPS - 1}", END)
    return b
