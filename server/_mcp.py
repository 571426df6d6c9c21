"""The MCP surface: tools over OrchestratorService, with schemas and errors an LLM can act on."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any, TypeVar

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import IntegrityError
from graphs import BUDGETS, WORKFLOWS
from server._browse import install_browsing
from server._caller import current_caller
from server._inline import request_state_security
from server._mcp_app import APP_META, production_app
from server._models import AgentList, DecisionResult, StartResult, WorkflowList, WorkflowStatus
from server._progress import set_level_handler
from server._prompts import install_prompts
from server._service import Caller, OrchestratorService
from server._subscriptions import RedisNotifier
from server._tasks_ext import WorkflowTasks
from server._tasks_listen import install_task_notifications
from server._waiting import StatusWaiter
from server.errors import NotFoundError, ServiceError

__all__ = ["build_mcp_server"]

T = TypeVar("T")

_INSTRUCTIONS = """\
movie-orchestrator runs AI movie productions as durable workflows.
Start one with start_workflow (it returns at once with a workflow_id), follow it with get_status
(pass wait_seconds to wait for the next change), and answer its questions with submit_decision
when get_status shows pending_decisions. Workflows survive restarts; nothing runs inside a call.
"""

WorkflowId = Annotated[str, Field(description="id returned by start_workflow, e.g. 'wf-0123456789abcdef'")]


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


_REDIS_DOWN = "unavailable: the workflow store (Redis) cannot be reached right now; try again shortly"


async def _run(coro: Awaitable[T]) -> T:
    try:
        return await coro
    except ServiceError as exc:
        raise ToolError(f"{exc.code}: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as exc:
        raise ToolError(_REDIS_DOWN) from exc
    except IntegrityError as exc:
        raise ToolError(f"integrity_error: {exc}; the record is kept for inspection and not used") from exc


async def _read(coro: Awaitable[Any]) -> str:
    try:
        value = await coro
    except NotFoundError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except ServiceError as exc:
        raise ResourceError(f"{exc.code}: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as exc:
        raise ResourceError(_REDIS_DOWN) from exc
    except IntegrityError as exc:
        raise ResourceError(f"integrity_error: {exc}; the data is kept for inspection and not used") from exc
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json(indent=1))
    return json.dumps(value, indent=1, default=str)


def build_mcp_server(
    service: OrchestratorService,
    *,
    default_caller: Caller | None = None,
    notifier: RedisNotifier | None = None,
    integrity_keys: Sequence[bytes] = (),
) -> MCPServer:
    """The MCPServer exposing the orchestrator's tools and resources.

    Args:
        service: the operations behind the tools.
        default_caller: who calls when the transport authenticated nobody (stdio: the local user,
            or the key given with --api-key).
        notifier: cross-instance resource notifications (both MCP generations).
        integrity_keys: the deployment's keys; the sealing keys of inline decisions' request state derive
            from them, so any instance accepts another's (else a key of this process only).
    """
    fallback = default_caller or Caller()
    mcp = MCPServer(
        name="movie-orchestrator",
        instructions=_INSTRUCTIONS,
        version="0.1.0",
        subscriptions=notifier.bus if notifier is not None else None,
        extensions=[WorkflowTasks(service, fallback), production_app()],
        request_state_security=(
            request_state_security(integrity_keys, lambda: (current_caller.get() or fallback).name)
            if integrity_keys
            else None
        ),
    )
    if notifier is not None:
        low = mcp._lowlevel_server
        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, notifier.on_subscribe)
        low.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, notifier.on_unsubscribe
        )
    install_task_notifications(mcp, notifier)
    budgets = service.budgets
    mcp._lowlevel_server.add_request_handler(
        "logging/setLevel", types.SetLevelRequestParams, set_level_handler
    )

    def who(ctx: Context) -> Caller:
        del ctx
        return current_caller.get() or fallback

    def caller_now() -> Caller:
        return current_caller.get() or fallback

    install_browsing(mcp, service, caller_now)
    waiter = StatusWaiter(service)
    install_prompts(mcp, service, caller_now)

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
        ctx: Context,
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
        return await _run(
            service.start_workflow(
                who(ctx),
                project_id=project_id,
                workflow=workflow,
                brief=brief,
                options=options,
                idempotency_key=idempotency_key,
            )
        )

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
        caller = who(ctx)
        if not wait_seconds and ctx.request_state is None:
            return await _run(service.get_status(caller, workflow_id))
        return await _run(waiter.get_status(ctx, caller, workflow_id, wait_seconds, until))

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
        ctx: Context,
        comment: Annotated[str, Field(description="optional reason, kept in the audit log")] = "",
    ) -> DecisionResult:
        return await _run(
            service.submit_decision(
                who(ctx), workflow_id=workflow_id, decision_id=decision_id, choice=choice, comment=comment
            )
        )

    @mcp.tool(
        description="List workflows newest first, optionally of one project and one status; page with cursor.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def list_workflows(
        ctx: Context,
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
        return await _run(
            service.list_workflows(who(ctx), project_id=project_id, status=status, cursor=cursor, limit=limit)
        )

    @mcp.tool(description="Pause a workflow at its next step boundary; its progress is kept.")
    async def pause_workflow(workflow_id: WorkflowId, ctx: Context) -> WorkflowStatus:
        return await _run(service.pause(who(ctx), workflow_id))

    @mcp.tool(description="Resume a paused workflow from where it stopped.")
    async def resume_workflow(workflow_id: WorkflowId, ctx: Context) -> WorkflowStatus:
        return await _run(service.resume(who(ctx), workflow_id))

    @mcp.tool(
        description="Cancel a workflow for good (outside jobs are cancelled too).",
        annotations=ToolAnnotations(destructive_hint=True),
    )
    async def cancel_workflow(workflow_id: WorkflowId, ctx: Context) -> WorkflowStatus:
        return await _run(service.cancel(who(ctx), workflow_id))

    @mcp.tool(description="Re-run the step a failed workflow stopped at; finished steps are not redone.")
    async def retry_step(workflow_id: WorkflowId, ctx: Context) -> WorkflowStatus:
        return await _run(service.retry_step(who(ctx), workflow_id))

    @mcp.tool(
        description=(
            "Start a new workflow from any checkpoint of an existing one (ids are in the resource "
            "workflow://{id}/checkpoints). The new workflow continues from that state on its own."
        )
    )
    async def fork_workflow(
        workflow_id: WorkflowId,
        checkpoint_id: Annotated[str, Field(description="checkpoint id to start from")],
        ctx: Context,
    ) -> StartResult:
        return await _run(service.fork(who(ctx), workflow_id, checkpoint_id))

    @mcp.tool(
        description="List the production's agents, optionally of one phase (story, character, visual, audio, "
        "scene, post, final) or with one capability; shows whether each is available now.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def list_agents(
        ctx: Context,
        phase: str | None = None,
        capability: Annotated[str | None, Field(description="e.g. scene.video or character.voice")] = None,
    ) -> AgentList:
        async def go() -> AgentList:
            return service.list_agents(phase=phase, capability=capability)

        return await _run(go())

    # -- resources ------------------------------------------------------------------------------

    @mcp.resource("workflow://{workflow_id}/state", mime_type="application/json",
                  description="The workflow's status (the same as get_status).")  # fmt: skip
    async def state_resource(workflow_id: str, ctx: Context) -> str:
        return await _read(service.get_status(who(ctx), workflow_id))

    @mcp.resource("workflow://{workflow_id}/decisions", mime_type="application/json",
                  description="Open decisions and the answers recorded so far.")  # fmt: skip
    async def decisions_resource(workflow_id: str, ctx: Context) -> str:
        return await _read(service.decisions(who(ctx), workflow_id))

    @mcp.resource("workflow://{workflow_id}/events", mime_type="application/json",
                  description="The audit log: every state change with who, what, when and correlation id.")  # fmt: skip
    async def events_resource(workflow_id: str, ctx: Context) -> str:
        return await _read(service.events(who(ctx), workflow_id))

    @mcp.resource("workflow://{workflow_id}/checkpoints", mime_type="application/json",
                  description="The workflow's checkpoints, newest first (fork from any of them).")  # fmt: skip
    async def checkpoints_resource(workflow_id: str, ctx: Context) -> str:
        return await _read(service.checkpoints(who(ctx), workflow_id))

    @mcp.resource("workflow://{workflow_id}/checkpoints/{checkpoint_id}", mime_type="application/json",
                  description="One checkpoint's state values and metadata.")  # fmt: skip
    async def checkpoint_resource(workflow_id: str, checkpoint_id: str, ctx: Context) -> str:
        return await _read(service.checkpoint(who(ctx), workflow_id, checkpoint_id))

    @mcp.resource("security://audit", mime_type="application/json",
                  description="Security events: auth failures, key changes, denied calls, integrity failures, "
                              "decisions. Admin keys only.")  # fmt: skip
    async def security_resource() -> str:
        # Static resources get no Context; the transport already put the caller in current_caller.
        return await _read(service.security_audit(current_caller.get() or fallback))

    @mcp.resource("agents://registry", mime_type="application/json",
                  description="Every agent of the production with its phase, capabilities and operation.")  # fmt: skip
    async def agents_resource() -> str:
        async def go() -> AgentList:
            return service.list_agents()

        return await _read(go())

    return mcp
