"""Typed results of the orchestrator's operations (they become the tools' output schemas)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from adapters import Status

__all__ = [
    "AgentInfo",
    "AgentList",
    "CheckpointDetail",
    "CheckpointInfo",
    "CheckpointList",
    "Decision",
    "DecisionResult",
    "StartResult",
    "WorkflowList",
    "WorkflowStatus",
    "WorkflowSummary",
]


# Inlined (an enum of strings), not a $ref to $defs: some clients pass output schemas on as they are.
StatusName = Annotated[
    Status,
    WithJsonSchema({"type": "string", "enum": [s.value for s in Status],
                    "description": " | ".join(s.value for s in Status)}),
]  # fmt: skip


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
    status: StatusName
    project_id: str
    workflow: str
    created: bool = Field(description="false when an earlier call with the same idempotency key created it")
    resources: dict[str, str] = Field(description="resource URIs to read or subscribe to")


class WorkflowStatus(BaseModel):
    """Where a workflow stands."""

    workflow_id: str
    project_id: str
    workflow: str
    status: StatusName
    phase: str
    step: str
    percent: float
    message: str
    agents_running: list[str]
    pending_decisions: list[Decision]
    last_error: str
    waiting_reason: str = Field(
        default="", description="why the workflow waits, e.g. an outside service is down"
    )
    services: dict[str, str] = Field(
        default_factory=dict, description="outside services' circuit states: closed | open | half-open"
    )
    created_at: float
    updated_at: float
    result: dict[str, Any] = Field(default_factory=dict)
    forked_from: str = ""
    queue_position: int | None = Field(
        default=None, description="while queued: its place in its project's own queue (1 is next)"
    )
    queued_in_project: int | None = Field(
        default=None, description="while queued: how many of its project wait"
    )


class WorkflowSummary(BaseModel):
    """One line of list_workflows."""

    workflow_id: str
    project_id: str
    workflow: str
    status: StatusName
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


class AgentInfo(BaseModel):
    """One agent of the registry."""

    id: str
    name: str
    phase: str
    capabilities: list[str]
    operation: str = Field(description="kind:name, e.g. task:generate_image or brain:create_character")
    alternatives: list[str]
    available: bool = Field(description="false while the service it depends on is unavailable")


class AgentList(BaseModel):
    """Agents matching list_agents' filters."""

    agents: list[AgentInfo]


class CheckpointInfo(BaseModel):
    """One checkpoint of a workflow."""

    checkpoint_id: str
    parent_id: str | None
    step: int | None
    source: str | None
    created_at: str
    next: list[str] = Field(default_factory=list)


class CheckpointList(BaseModel):
    """A workflow's checkpoints, newest first."""

    workflow_id: str
    checkpoints: list[CheckpointInfo]


class CheckpointDetail(BaseModel):
    """One checkpoint's state values and metadata."""

    workflow_id: str
    checkpoint_id: str
    parent_id: str | None
    metadata: dict[str, Any]
    values: dict[str, Any]
    pending_writes: int
