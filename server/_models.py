"""Typed results of the orchestrator's operations (they become the tools' output schemas)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "Decision",
    "DecisionResult",
    "StartResult",
    "WorkflowList",
    "WorkflowStatus",
    "WorkflowSummary",
]


class Decision(BaseModel):
    """A question the workflow waits on."""

    id: str = Field(description="decision id to pass to submit_decision")
    question: str
    options: list[str] = Field(description="allowed choices; empty means free text")
    kind: str = "choice"
    deadline: float | None = Field(default=None, description="unix time after which a default is taken")
    context: dict[str, Any] = Field(default_factory=dict)


class StartResult(BaseModel):
    """Answer of start_workflow."""

    workflow_id: str
    status: str
    project_id: str
    workflow: str
    created: bool = Field(description="false when an earlier call with the same idempotency key created it")
    resources: dict[str, str] = Field(description="resource URIs to read or subscribe to")


class WorkflowStatus(BaseModel):
    """Where a workflow stands."""

    workflow_id: str
    project_id: str
    workflow: str
    status: str = Field(
        description="queued | running | waiting_decision | paused | completed | failed | cancelled"
    )
    phase: str
    step: str
    percent: float
    message: str
    agents_running: list[str]
    pending_decisions: list[Decision]
    last_error: str
    created_at: float
    updated_at: float
    result: dict[str, Any] = Field(default_factory=dict)
    forked_from: str = ""


class WorkflowSummary(BaseModel):
    """One line of list_workflows."""

    workflow_id: str
    project_id: str
    workflow: str
    status: str
    percent: float
    created_at: float
    updated_at: float


class WorkflowList(BaseModel):
    """A page of workflows, newest first."""

    workflows: list[WorkflowSummary]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


class DecisionResult(BaseModel):
    """Answer of submit_decision."""

    accepted: bool
    reason: str
    workflow_id: str
    decision_id: str
    choice: str
    decided_by: str
