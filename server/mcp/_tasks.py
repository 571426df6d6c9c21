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
``tasks/result`` and ``tasks/list`` are not part of the extension (``-32601`` at 2026-07-28).

The same methods in the handshake era are the 2025-11-25 experimental tasks, on the same workflows: each
method here hands a handshake-era request to `server.mcp._handshake_tasks` (which also serves
``tasks/result`` and ``tasks/list`` there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import mcp_types as types
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field, ValidationError

from adapters import TERMINAL
from server.core import Caller, OrchestratorService, WorkflowStatus, current_caller
from server.mcp._task_view import TaskView, answer, as_task_error

__all__ = [
    "TASKS_EXTENSION",
    "TASK_TOOLS",
    "ListTasksParams",
    "TaskIdParams",
    "TasksExtension",
    "declared",
    "require_declared",
]

log = structlog.get_logger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
# The tools whose answer is a workflow that goes on running: those answer with a task.
TASK_TOOLS = frozenset({"start_workflow", "fork_workflow", "retry_step"})

Handler = Callable[[ServerRequestContext[Any, Any], Any], Awaitable[HandlerResult]]


class TaskIdParams(types.RequestParams):
    """Params of ``tasks/get``, ``tasks/cancel`` and (2025-11-25) ``tasks/result``."""

    task_id: str


class ListTasksParams(types.PaginatedRequestParams):
    """Params of ``tasks/list`` (2025-11-25)."""


class AnyParams(types.RequestParams):
    """Params read by the handler itself: a method of one generation only answers the other -32601,
    whatever its params, so they are checked once the generation is known."""

    model_config = ConfigDict(extra="allow")


class HandshakeEra(Protocol):
    """The 2025-11-25 experimental tasks (`server.mcp._handshake_tasks.HandshakeTasks`)."""

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult: ...
    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult: ...
    async def result(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult: ...
    async def list(self, ctx: ServerRequestContext[Any, Any], params: ListTasksParams) -> HandlerResult: ...


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


class TasksExtension(Extension):
    """Workflows as MCP tasks, through the SDK's Extension API.

    Args:
        service: the operations behind the tools (the same ledger, scopes and audit).
        fallback: the caller when the transport authenticated nobody (as the tools use).
    """

    identifier = TASKS_EXTENSION

    def __init__(
        self, service: OrchestratorService, fallback: Caller, handshake: HandshakeEra | None = None
    ) -> None:
        self._service = service
        self._fallback = fallback
        self._handshake = handshake
        self.view = TaskView(service, fallback)

    def _who(self) -> Caller:
        return current_caller.get() or self._fallback

    def methods(self) -> Sequence[MethodBinding]:
        """``tasks/get``, ``tasks/update`` and ``tasks/cancel``; in the handshake era (when served) the
        2025-11-25 ``tasks/get``, ``tasks/cancel``, ``tasks/result`` and ``tasks/list``."""
        bindings = [MethodBinding("tasks/update", UpdateTaskParams, self._update)]
        draft = self._handshake
        if draft is None:
            return (*bindings, MethodBinding("tasks/get", TaskIdParams, self._get),
                    MethodBinding("tasks/cancel", TaskIdParams, self._cancel))  # fmt: skip
        return (
            *bindings,
            MethodBinding("tasks/get", TaskIdParams, _by_era(self._get, draft.get)),
            MethodBinding("tasks/cancel", TaskIdParams, _by_era(self._cancel, draft.cancel)),
            MethodBinding(
                "tasks/result", AnyParams, _handshake_only("tasks/result", TaskIdParams, draft.result)
            ),
            MethodBinding(
                "tasks/list", AnyParams, _handshake_only("tasks/list", ListTasksParams, draft.list)
            ),
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
        st = await as_task_error(wid, self._service.get_status(self._who(), wid))
        task = await self.view.task(st)
        for key in ("result", "error", "inputRequests"):
            task.pop(key, None)
        if task["status"] == "input_required":
            task["status"] = "working"
        log.info("tasks.created", task_id=wid, tool=params.name, status=task["status"])
        return {"resultType": "task", **task}

    # -- the task view (`TaskView`), for the listen streams and the tests -------------------------

    async def task(self, st: WorkflowStatus) -> dict[str, Any]:
        """The DetailedTask (wire shape) for a workflow status."""
        return await self.view.task(st)

    async def visible(self, task_id: str) -> bool:
        """True if the current caller may read the task (unknown and other projects' tasks are not)."""
        return await self.view.visible(task_id)

    async def current(self, task_id: str) -> dict[str, Any] | None:
        """The task as tasks/get would answer it now; None if it is gone or no longer visible."""
        return await self.view.current(task_id)

    # -- tasks/* --------------------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        require_declared(ctx)
        st = await as_task_error(params.task_id, self._service.get_status(self._who(), params.task_id))
        return {"resultType": "complete", **await as_task_error(params.task_id, self.view.task(st))}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        require_declared(ctx)
        caller = self._who()
        st = await as_task_error(params.task_id, self._service.get_status(caller, params.task_id))
        # Cooperative: a task already at an end acknowledges and keeps its terminal status.
        if st.status not in TERMINAL:
            await as_task_error(params.task_id, self._service.cancel(caller, params.task_id))
            log.info("tasks.cancelled", task_id=params.task_id, caller=caller.name)
        return {"resultType": "complete"}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        require_declared(ctx)
        caller = self._who()
        wid = params.task_id
        st = await as_task_error(wid, self._service.get_status(caller, wid))
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
            await as_task_error(wid, self._service.submit_decision(caller, workflow_id=wid, decision_id=key,
                                                            choice=choice, comment=comment))  # fmt: skip
        log.info("tasks.updated", task_id=wid, answered=[a[0] for a in answers], caller=caller.name)
        return {"resultType": "complete"}


def _by_era(modern: Handler, handshake: Handler) -> Handler:
    """One method of both generations: the extension's at 2026-07-28, the 2025-11-25 draft's before."""

    async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await modern(ctx, params)
        return await handshake(ctx, params)

    return handler


def _handshake_only(method: str, params_type: type[types.RequestParams], handler: Handler) -> Handler:
    """A method of the 2025-11-25 draft only: -32601 at 2026-07-28 (the extension has no such method)."""

    async def handle(ctx: ServerRequestContext[Any, Any], params: AnyParams) -> HandlerResult:
        if ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data=method)
        try:
            typed = params_type.model_validate(params.model_dump(by_alias=True, exclude_none=True))
        except ValidationError as exc:
            msg = f"{method}: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}"
            raise MCPError(code=types.INVALID_PARAMS, message=msg) from exc
        return await handler(ctx, typed)

    return handle
