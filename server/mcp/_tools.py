"""The tools: one `OrchestratorService` operation each, with schemas and errors an LLM can act on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from graphs import BUDGETS, WORKFLOWS
from server.core import (
    AgentList,
    Caller,
    DecisionResult,
    OrchestratorService,
    StartResult,
    WorkflowList,
    WorkflowStatus,
    current_caller,
    refused_as,
)
from server.mcp._app import APP_META
from server.mcp._waiting import StatusWaiter

__all__ = ["Tools", "as_tool_error", "register_tools"]

T = TypeVar("T")
P = ParamSpec("P")

WorkflowId = Annotated[str, Field(description="id returned by start_workflow, e.g. 'wf-0123456789abcdef'")]


async def as_tool_error(coro: Awaitable[T]) -> T:
    """Run an operation; a refusal (the error tree, `server.core.refusal`) becomes a tool error."""
    return await refused_as(coro, lambda said, _: ToolError(said.text))


async def _now(fn: Callable[[], T]) -> T:
    return fn()


@dataclass(frozen=True)
class Tools:
    """What the tools need: the operations, the long-poll form of get_status, and who calls."""

    service: OrchestratorService
    waiter: StatusWaiter
    fallback: Caller

    def caller(self) -> Caller:
        """The caller the transport authenticated, else the server's default caller (stdio)."""
        return current_caller.get() or self.fallback

    async def run(
        self, operation: Callable[Concatenate[Caller, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """An operation of the service as the current caller; its refusals become tool errors."""
        return await as_tool_error(operation(self.caller(), *args, **kwargs))


def _options_schema(schema: dict[str, Any]) -> None:
    """Show each workflow's options, with their ranges, in start_workflow's input schema.

    One plain object per workflow under ``anyOf``, every property inlined (no ``$ref``, no ``oneOf``, no
    discriminator), ``additionalProperties: false``: the constructs every MCP client passes to its model
    as they are. The service checks the options against the chosen workflow's own model.
    """
    branches: list[dict[str, Any]] = []
    for name, spec in WORKFLOWS.items():
        props: dict[str, Any] = {}
        for key, prop in spec.options.model_json_schema()["properties"].items():
            kinds = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
            shown = {k: v for k, v in {**prop, **kinds[0]}.items() if k not in {"anyOf", "title"}}
            if shown.get("default", 0) is None:
                del shown["default"]
            props[key] = shown
        # The workflow's own options first, the budgets every workflow shares after them.
        props = dict(sorted(props.items(), key=lambda kv: kv[0].removeprefix("max_") in BUDGETS))
        branches.append({"title": f"{name} options", "type": "object", "properties": props,
                         "additionalProperties": False})  # fmt: skip
    schema.clear()
    schema.update(
        description="options of the chosen workflow (use the object titled '<workflow> options'); every one is "
        "optional, unknown options and values out of range are refused",
        anyOf=[*branches, {"type": "null"}],
        default=None,
    )


def register_tools(mcp: MCPServer, tools: Tools) -> None:
    """Register every tool (in the order tools/list shows them)."""
    _register_start(mcp, tools)
    _register_status(mcp, tools)
    _register_decide(mcp, tools)
    _register_list(mcp, tools)
    _register_steering(mcp, tools)
    _register_agents(mcp, tools)


def _register_start(mcp: MCPServer, tools: Tools) -> None:
    service, budgets = tools.service, tools.service.budgets

    @mcp.tool(
        description=(
            "Start a production workflow for a project. Returns immediately with the workflow id and "
            "resource URIs; the production runs in the background. The same idempotency_key "
            "returns the same workflow instead of starting another. Each workflow takes its own options "
            "(see the input schema); unknown options and values out of range are refused. Every workflow "
            f"stops, failed, past this deployment's budgets: {budgets.agent_executions} agent executions, "
            f"{budgets.outside_jobs} outside jobs, {budgets.fan_out} parallel branches in one step, "
            f"{budgets.step_seconds:g} s per step (options max_* may ask for less)."
        ),
        annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False, open_world_hint=True),
        meta=APP_META,
    )
    async def start_workflow(
        project_id: Annotated[str, Field(description="Auto-Movie project id (letters, digits, '_', '-')")],
        workflow: Annotated[
            str,
            Field(description="which workflow to run", json_schema_extra={"enum": sorted(WORKFLOWS)}),
        ] = "movie_production",
        brief: Annotated[str, Field(description="what the production is about, in plain words")] = "",
        options: Annotated[
            dict[str, Any] | None,
            Field(json_schema_extra=_options_schema),
        ] = None,
        idempotency_key: Annotated[
            str | None, Field(description="any string; repeating it returns the first workflow")
        ] = None,
    ) -> StartResult:
        return await tools.run(
            service.start_workflow,
            project_id=project_id,
            workflow=workflow,
            brief=brief,
            options=options,
            idempotency_key=idempotency_key,
        )


def _register_status(mcp: MCPServer, tools: Tools) -> None:
    service, waiter = tools.service, tools.waiter

    @mcp.tool(
        description=(
            "Where a workflow stands: status, phase, step, percent, agents running, pending decisions "
            "(answer them with submit_decision) and the last error. With wait_seconds, waits for the "
            "next change (up to that long) and sends progress notifications and the workflow's notable "
            "events as log messages meanwhile; a client that can answer forms is asked a pending "
            "decision inline."
        ),
        annotations=ToolAnnotations(read_only_hint=True),
        meta=APP_META,
    )
    async def get_status(
        workflow_id: WorkflowId,
        ctx: Context,
        wait_seconds: Annotated[float, Field(ge=0, le=300, description="0 answers at once")] = 0,
        until: Annotated[
            list[str] | None,
            Field(
                description="with wait_seconds: wait for one of these statuses (e.g. ['completed', "
                "'waiting_decision']) instead of the next change; finished workflows answer at once"
            ),
        ] = None,
    ) -> WorkflowStatus | types.InputRequiredResult:
        caller = tools.caller()
        if not wait_seconds and ctx.request_state is None:
            return await as_tool_error(service.get_status(caller, workflow_id))
        return await as_tool_error(waiter.get_status(ctx, caller, workflow_id, wait_seconds, until))


def _register_decide(mcp: MCPServer, tools: Tools) -> None:
    service = tools.service

    @mcp.tool(
        description=(
            "Answer a pending decision of a workflow (ids and allowed options are in get_status's "
            "pending_decisions). Idempotent: repeating the same answer is accepted; a different answer "
            "to a decision already taken is refused with the earlier choice."
        ),
        annotations=ToolAnnotations(idempotent_hint=True),
    )
    async def submit_decision(
        workflow_id: WorkflowId,
        decision_id: Annotated[str, Field(description="id from pending_decisions")],
        choice: Annotated[str, Field(description="one of the decision's options")],
        comment: Annotated[str, Field(description="optional reason, kept in the audit log")] = "",
    ) -> DecisionResult:
        return await tools.run(
            service.submit_decision,
            workflow_id=workflow_id,
            decision_id=decision_id,
            choice=choice,
            comment=comment,
        )


def _register_list(mcp: MCPServer, tools: Tools) -> None:
    service = tools.service

    @mcp.tool(
        description="List workflows newest first, optionally of one project and one status; page with cursor.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def list_workflows(
        project_id: str | None = None,
        status: Annotated[
            str | None,
            Field(
                description="queued | running | waiting_decision | paused | completed | failed | cancelled"
            ),
        ] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> WorkflowList:
        return await tools.run(
            service.list_workflows, project_id=project_id, status=status, cursor=cursor, limit=limit
        )


def _control(
    tools: Tools, operation: Callable[[Caller, str], Awaitable[WorkflowStatus]]
) -> Callable[..., Any]:
    async def control(workflow_id: WorkflowId) -> WorkflowStatus:
        return await tools.run(operation, workflow_id)

    return control


def _register_steering(mcp: MCPServer, tools: Tools) -> None:
    service = tools.service
    controls = [
        ("pause_workflow", service.pause, "Pause a workflow at its next step boundary; its progress is kept.", None),
        ("resume_workflow", service.resume, "Resume a paused workflow from where it stopped.", None),
        ("cancel_workflow", service.cancel, "Cancel a workflow for good (outside jobs are cancelled too).",
         ToolAnnotations(destructive_hint=True)),
        ("retry_step", service.retry_step,
         "Re-run the step a failed workflow stopped at; finished steps are not redone.", None),
    ]  # fmt: skip
    for name, operation, description, hints in controls:
        mcp.tool(name=name, description=description, annotations=hints)(_control(tools, operation))

    @mcp.tool(
        description=(
            "Start a new workflow from any checkpoint of an existing one (ids are in the resource "
            "workflow://{id}/checkpoints). The new workflow continues from that state on its own."
        )
    )
    async def fork_workflow(
        workflow_id: WorkflowId,
        checkpoint_id: Annotated[str, Field(description="checkpoint id to start from")],
    ) -> StartResult:
        return await tools.run(service.fork, workflow_id, checkpoint_id)


def _register_agents(mcp: MCPServer, tools: Tools) -> None:
    service = tools.service

    @mcp.tool(
        description="List the production's agents, optionally of one phase (story, character, visual, audio, "
        "scene, post, final) or with one capability; shows whether each is available now.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def list_agents(
        phase: str | None = None,
        capability: Annotated[str | None, Field(description="e.g. scene.video or character.voice")] = None,
    ) -> AgentList:
        return await as_tool_error(_now(lambda: service.list_agents(phase=phase, capability=capability)))
