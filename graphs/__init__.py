"""LangGraph graphs, their state schemas, the ports nodes use, and the catalogue of workflows."""

from graphs._catalog import WORKFLOWS, WorkflowSpec
from graphs._ports import Ports, TaskPort
from graphs._preview import PreviewState, build_preview

__all__ = ["WORKFLOWS", "Ports", "PreviewState", "TaskPort", "WorkflowSpec", "build_preview"]
