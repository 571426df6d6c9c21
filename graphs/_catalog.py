"""The workflows the orchestrator can start, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph import StateGraph

from graphs._preview import build_preview

__all__ = ["WORKFLOWS", "WorkflowSpec"]


@dataclass(frozen=True)
class WorkflowSpec:
    """A startable workflow: its graph builder and how to make its first input."""

    name: str
    description: str
    build: Callable[[], StateGraph[Any, Any, Any, Any]]

    def initial_input(self, project_id: str, brief: str, options: dict[str, Any]) -> dict[str, Any]:
        """The graph's input for a new run."""
        return {"project_id": project_id, "brief": brief, **({"options": options} if options else {})}


WORKFLOWS: dict[str, WorkflowSpec] = {
    "preview": WorkflowSpec(
        name="preview",
        description="A concept, one key image from the Task Service and a summary (about a second).",
        build=build_preview,
    ),
}
