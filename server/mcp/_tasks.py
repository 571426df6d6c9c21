"""The MCP Tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663, revision 2026-07-28).

A workflow is a task: when a ``tools/call`` of `start_workflow`, `fork_workflow` or `retry_step` declares
the extension, the answer is a ``CreateTaskResult`` whose ``taskId`` is the workflow id. The workflow
record is written by the service before the tool returns, so the task is durable before the reply and
any instance answers ``tasks/get`` for it. A pending decision is an input request (a form elicitation
keyed by the decision id); ``tasks/update`` answers it through the same decision ledger as
``submit_decision``; ``tasks/cancel`` cancels the workflow.

Status mapping (workflow → task)::

    queued | running | paused   working         statusMessage: phase, step, percent, what it waits for
    waiting_decision            input_required  inputRequests: one form per open decision
    completed                   completed       result: the production summary as a CallToolResult
    failed                      failed          error: names the step and how to retry it
    cancelled                   cancelled

Clients that did not declare the extension get today's tool results, and ``-32021`` from ``tasks/*``.
``tasks/result`` and ``tasks/list`` are not part of the extension and stay unregistered (``-32601``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import mcp_types as types
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from adapters import TERMINAL, OrchestratorError, RequestError, Status
from server.core import Caller, OrchestratorService, Refusal, WorkflowStatus, current_caller, refused_as
from server.mcp._task_view import answer, decision_form, deliverable_uris, iso, working_message

__all__ = ["TASKS_EXTENSION", "TasksExtension", "declared", "require_declared"]

log = structlog.get_logger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
# The tools whose answer is a workflow that goes on running: those answer with a task.
TASK_TOOLS = frozenset({"start_workflow", "fork_workflow", "retry_step"})
# A status read costs one HGETALL; a person waiting on a production does not need it faster.
_POLL_WORKING_MS = 2_000
_POLL_WAITING_MS = 5_000

T = TypeVar("T")


class TaskIdParams(types.RequestParams):
    """Params of ``tasks/get`` and ``tasks/cancel``."""

    task_id: str


class UpdateTaskParams(types.RequestParams):
    """Params of ``tasks/update``: answers keyed by the ``inputRequests`` keys (decision ids)."""

    task_id: str
    input_responses: dict[str, Any] = Field(default_factory=dict)


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """True when this request's client declared the Tasks extension."""
    caps = ctx.session.client_capabilities
    return bool(caps is not None and caps.extensions and TASKS_EXTENSION in caps.extensions)


def require_declared(ctx: ServerRequestContext[Any, Any]) -> None:
    """Raise -32021 (naming the extension) unless this request's client declared the Tasks extension."""
    if declared(ctx):
        return
    data = types.MissingRequiredClientCapabilityErrorData(
        required_capabilities=types.ClientCapabilities(extensions={TASKS_EXTENSION: {}})
    )
    raise MCPError(
        code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"Missing required client capability: declare the extension {TASKS_EXTENSION!r} "
        "in this request's client capabilities to use tasks/*",
        data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def _not_found(task_id: str) -> MCPError:
    return MCPError(code=types.INVALID_PARAMS, message=f"Failed to retrieve task: task {task_id!r} not found")


async def _as_task_error(task_id: str, coro: Awaitable[T]) -> T:
    """The service's refusals as JSON-RPC errors (another project's task is not found, as in the tools)."""

    def refused(said: Refusal, exc: OrchestratorError) -> Exception:
        # A workflow id that is wrong, unknown or another project's: the task is not found.
        if said.field == "workflow_id" or (said.not_found and isinstance(exc, RequestError)
                                           and exc.details.get("workflow_id")):  # fmt: skip
            return _not_found(task_id)
        code = types.INVALID_PARAMS if isinstance(exc, RequestError) else types.INTERNAL_ERROR
        return MCPError(code=code, message=said.text)

    return await refused_as(coro, refused)


class TasksExtension(Extension):
    """Workflows as MCP tasks, through the SDK's Extension API.

    Args:
        service: the operations behind the tools (the same ledger, scopes and audit).
        fallback: the caller when the transport authenticated nobody (as the tools use).
    """

    identifier = TASKS_EXTENSION

    def __init__(self, service: OrchestratorService, fallback: Caller) -> None:
        self._service = service
        self._fallback = fallback

    def _who(self) -> Caller:
        return current_caller.get() or self._fallback

    def methods(self) -> Sequence[MethodBinding]:
        """``tasks/get``, ``tasks/update`` and ``tasks/cancel`` (``tasks/result``/``tasks/list`` do not exist)."""
        return (
            MethodBinding("tasks/get", TaskIdParams, self._get),
            MethodBinding("tasks/update", UpdateTaskParams, self._update),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel),
        )

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """Answer a workflow-starting call with a task when the request declared the extension."""
        result = await call_next(ctx)
        if (
            params.name not in TASK_TOOLS
            or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS
            or not declared(ctx)
            or not isinstance(result, types.CallToolResult)
            or result.is_error
            or not result.structured_content
        ):
            return result
        wid = str(result.structured_content.get("workflow_id", ""))
        # The record was written before the tool returned: this read is what tasks/get will see.
        st = await _as_task_error(wid, self._service.get_status(self._who(), wid))
        task = await self.task(st)
        for key in ("result", "error", "inputRequests"):
            task.pop(key, None)
        if task["status"] == "input_required":
            task["status"] = "working"
        log.info("tasks.created", task_id=wid, tool=params.name, status=task["status"])
        return {"resultType": "task", **task}

    # -- the task view of a workflow ------------------------------------------------------------

    def ttl_ms(self, st: WorkflowStatus) -> int:
        """Keys of a finished workflow live `retention_seconds` after its end; a running one is kept."""
        retention = self._service.retention_seconds
        end = st.updated_at if st.status in TERMINAL else time.time()
        return int((max(end - st.created_at, 0) + retention) * 1000)

    async def task(self, st: WorkflowStatus) -> dict[str, Any]:
        """The DetailedTask (wire shape) for a workflow status."""
        base: dict[str, Any] = {
            "taskId": st.workflow_id,
            "createdAt": iso(st.created_at),
            "lastUpdatedAt": iso(st.updated_at),
            "ttlMs": self.ttl_ms(st),
        }
        if st.status == Status.COMPLETED:
            return {**base, "status": "completed", "statusMessage": self._done_message(st),
                    "result": await self._result(st)}  # fmt: skip
        if st.status == Status.FAILED:
            where = ": ".join(p for p in (st.phase, st.step) if p) or "its first step"
            retry = (
                f"call retry_step with workflow_id={st.workflow_id!r} to re-run it (finished steps are kept)"
            )
            message = f"step {where} failed: {st.last_error or 'no detail recorded'}; {retry}"
            error = {
                "code": types.INTERNAL_ERROR,
                "message": message,
                "data": {"workflow_id": st.workflow_id, "phase": st.phase, "step": st.step,
                         "last_error": st.last_error, "retry": {"tool": "retry_step",
                                                                "arguments": {"workflow_id": st.workflow_id}}},
            }  # fmt: skip
            return {**base, "status": "failed", "statusMessage": message, "error": error}
        if st.status == Status.CANCELLED:
            return {**base, "status": "cancelled", "statusMessage": st.message or "cancelled"}
        if st.status == Status.WAITING_DECISION:
            answered = (await self._service.answers(self._who(), st.workflow_id)).keys()
            open_ = [d for d in st.pending_decisions if d.id not in answered]
            if open_:
                questions = "; ".join(d.question for d in open_)
                return {**base, "status": "input_required", "pollIntervalMs": _POLL_WAITING_MS,
                        "statusMessage": f"waiting for {len(open_)} decision(s) at "
                                         f"{st.phase or 'the workflow'}: {questions}",
                        "inputRequests": {d.id: decision_form(d) for d in open_}}  # fmt: skip
            return {**base, "status": "working", "pollIntervalMs": _POLL_WORKING_MS,
                    "statusMessage": "decision received, resuming"}  # fmt: skip
        poll = _POLL_WAITING_MS if st.status == Status.PAUSED else _POLL_WORKING_MS
        return {**base, "status": "working", "pollIntervalMs": poll, "statusMessage": working_message(st)}

    @staticmethod
    def _done_message(st: WorkflowStatus) -> str:
        outcome = st.result.get("outcome", "completed")
        made = st.result.get("deliverables") or []
        return f"{st.workflow} {outcome}: {len(made)} deliverable(s)" + (
            f" ({', '.join(made)})" if made else ""
        )

    async def _result(self, st: WorkflowStatus) -> dict[str, Any]:
        """The production summary as the CallToolResult the task stands for."""
        wid = st.workflow_id
        values: dict[str, Any] = {}
        final = f"workflow://{wid}/state"
        latest = await self._service.latest_values(self._who(), wid)
        if latest is not None:
            checkpoint_id, values = latest
            final = f"workflow://{wid}/checkpoints/{checkpoint_id}"
        made = values.get("deliverables") or {}
        names = st.result.get("deliverables") or sorted(k for k, v in made.items() if v)
        deliverables = []
        for name in names:
            uris = deliverable_uris(made.get(name))
            if not uris and isinstance(st.result.get(f"{name}_url"), str):
                uris = [st.result[f"{name}_url"]]
            # Text deliverables (concept, story, titles) live in the final checkpoint's values.
            deliverables.append({"name": name, "uris": uris or [final], "inline": not uris})
        ledger = await self._service.answers(self._who(), wid)
        decisions = [
            {"decision_id": k, "choice": v.get("choice"), "comment": v.get("comment", ""),
             "decided_by": v.get("by", ""), "decided_at": iso(float(v["at"])) if v.get("at") else None}
            for k, v in ledger.items()
        ]  # fmt: skip
        agents = [str(a) for a in values.get("agents_run") or []]
        executions = {
            "total": int(st.result.get("agent_executions", len(agents))),
            "by_agent": dict(sorted(Counter(agents).items())),
        }
        # What the call would have answered had it waited, valid against the output schema of every tool
        # that answers with a task (start_workflow and fork_workflow: StartResult; retry_step:
        # WorkflowStatus; the two share no field of different meaning), then the production's summary.
        # Clients that validate a task's result against the tool's schema (Inspector, TypeScript SDK)
        # accept it; the extra keys are allowed by those schemas.
        structured = {
            **st.model_dump(mode="json"),
            "created": True,
            "outcome": st.result.get("outcome", "completed"),
            "phases": list(st.result.get("phases") or []),
            "deliverables": deliverables,
            "decisions": decisions,
            "agent_executions": executions,
            "summary": st.result,
            "resources": self._service.resources(wid),
        }
        text = (
            f"{self._done_message(st)}. Phases: {', '.join(structured['phases']) or '-'}. "
            f"{executions['total']} agent executions, {len(decisions)} decision(s). "
            f"Details: workflow://{wid}/state"
        )
        return {
            "content": [{"type": "text", "text": text}],
            "structuredContent": structured,
            "isError": False,
        }

    async def visible(self, task_id: str) -> bool:
        """True if the current caller may read the task (unknown and other projects' tasks are not)."""
        try:
            await self._service.get_status(self._who(), task_id)
        except RequestError:
            return False
        return True

    async def current(self, task_id: str) -> dict[str, Any] | None:
        """The task as tasks/get would answer it now; None if it is gone or no longer visible."""
        try:
            return await self.task(await self._service.get_status(self._who(), task_id))
        except RequestError:
            return None

    # -- tasks/* --------------------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        require_declared(ctx)
        st = await _as_task_error(params.task_id, self._service.get_status(self._who(), params.task_id))
        return {"resultType": "complete", **await _as_task_error(params.task_id, self.task(st))}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        require_declared(ctx)
        caller = self._who()
        st = await _as_task_error(params.task_id, self._service.get_status(caller, params.task_id))
        # Cooperative: a task already at an end acknowledges and keeps its terminal status.
        if st.status not in TERMINAL:
            await _as_task_error(params.task_id, self._service.cancel(caller, params.task_id))
            log.info("tasks.cancelled", task_id=params.task_id, caller=caller.name)
        return {"resultType": "complete"}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        require_declared(ctx)
        caller = self._who()
        wid = params.task_id
        st = await _as_task_error(wid, self._service.get_status(caller, wid))
        answered = await self._service.answers(caller, wid)
        open_ = {d.id: d for d in st.pending_decisions}
        answers: list[tuple[str, str, str]] = []
        # Everything is checked before anything is recorded: a refused update writes nothing.
        for key, response in params.input_responses.items():
            choice, comment = answer(key, response)
            if choice is None:
                continue  # declined or cancelled: the decision stays open
            earlier = answered.get(key)
            if earlier is not None and earlier.get("choice") != choice:
                msg = (f"decision {key!r} of task {wid!r} was already taken: {earlier.get('choice')!r} "
                       f"by {earlier.get('by')!r}; a different answer is refused")  # fmt: skip
                raise MCPError(code=types.INVALID_PARAMS, message=msg,
                               data={"decision_id": key, "earlier_choice": earlier.get("choice")})  # fmt: skip
            if earlier is None and key not in open_:
                # Not outstanding (never issued, or superseded): ignored, as the extension says.
                log.info("tasks.update_ignored", task_id=wid, key=key)
                continue
            if earlier is None:
                options = open_[key].options
                if options and choice not in options:
                    msg = f"inputResponses[{key!r}].content.choice: {choice!r} is not one of {options}"
                    raise MCPError(code=types.INVALID_PARAMS, message=msg)
            answers.append((key, choice, comment))
        for key, choice, comment in answers:
            await _as_task_error(wid, self._service.submit_decision(caller, workflow_id=wid, decision_id=key,
                                                            choice=choice, comment=comment))  # fmt: skip
        log.info("tasks.updated", task_id=wid, answered=[a[0] for a in answers], caller=caller.name)
        return {"resultType": "complete"}
