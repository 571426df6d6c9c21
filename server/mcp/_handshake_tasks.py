"""The 2025-11-25 experimental tasks (handshake era), on the same durable workflows as the extension.

A client of that generation asks for a task with ``params.task`` on ``tools/call``. We advertise
``capabilities.tasks`` (``list``, ``cancel``, ``requests.tools.call``) to a client that negotiated 2025-11-25
and mark `start_workflow`, `fork_workflow` and `retry_step` ``execution.taskSupport: "optional"``. The
answer is a ``CreateTaskResult`` (``{"task": {...}}``) whose ``taskId`` is the workflow id, written to Redis
before the reply, so any instance answers for it:

- ``tasks/get``: the task (flat), the extension's view renamed (``ttl``, ``pollInterval``);
- ``tasks/result``: blocks until the workflow ends, then answers what the call would have (the result the
  extension inlines, valid against the tool's output schema) with the related-task ``_meta``. Meanwhile it
  sends progress on its own token, and asks each open decision as ``elicitation/create`` with the
  related-task ``_meta`` on its own stream: awaited where there is a back channel (stdio, WebSocket), sent
  with an id naming the decision on stateless HTTP (`server.mcp._inline.ElicitationAnswers` records the
  answer wherever it lands);
- ``tasks/list``: the caller's workflows, newest first; ``tasks/cancel``: cancels the workflow.

What is not served is refused before anything starts, so no work runs whose id the caller cannot see:
``params.task`` on a tool that cannot answer with a task (``-32601``, as the draft says), at an older
protocol version, or at 2026-07-28 from a client that did not declare the extension (``-32602``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from adapters import TERMINAL, OrchestratorError, Status, WorkflowStore
from server.core import Caller, OrchestratorService, WorkflowStatus, current_caller
from server.mcp._inline import InlineDecisions, answer_request_id, declares_form, form
from server.mcp._progress import PLAIN_REPLY, WaitFeed
from server.mcp._sdk import send_unanswered_request
from server.mcp._task_view import TaskView, as_task_error, iso
from server.mcp._tasks import TASK_TOOLS, TASKS_EXTENSION, ListTasksParams, TaskIdParams, declared

__all__ = ["TASKS_VERSION", "HandshakeTasks", "draft_task"]

log = structlog.get_logger(__name__)

TASKS_VERSION = "2025-11-25"
RELATED_TASK = "io.modelcontextprotocol/related-task"
_IMMEDIATE = "io.modelcontextprotocol/model-immediate-response"
_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
# One wait of tasks/result between looks at the workflow (it also returns at every change).
_WAIT_SECONDS = 60.0
_CANCEL_WAIT_SECONDS = 5.0
_STATUS_OF = {Status.WAITING_DECISION: "input_required", Status.COMPLETED: "completed",
              Status.FAILED: "failed", Status.CANCELLED: "cancelled"}  # fmt: skip


def draft_task(task: dict[str, Any]) -> dict[str, Any]:
    """The extension's task (`TaskView.task`) as a 2025-11-25 ``Task``: no inlined result or requests."""
    out = {k: task[k] for k in ("taskId", "status", "createdAt", "lastUpdatedAt")}
    if task.get("statusMessage"):
        out["statusMessage"] = task["statusMessage"]
    out["ttl"] = task.get("ttlMs")
    if task.get("pollIntervalMs") is not None:
        out["pollInterval"] = task["pollIntervalMs"]
    return out


def _refusal_text(result: Mapping[str, Any]) -> str:
    return " ".join(str(c.get("text", "")) for c in result.get("content") or [] if isinstance(c, dict))


class HandshakeTasks:
    """The 2025-11-25 tasks: the request middleware that asks for and creates them, and ``tasks/*``.

    Args:
        view: how a workflow reads as a task.
        service: the operations (the same scopes, ledger and audit as the tools).
        store: the workflow store (a waiting ``tasks/result`` reports from its events).
        fallback: the caller when the transport authenticated nobody.
    """

    def __init__(
        self, view: TaskView, service: OrchestratorService, store: WorkflowStore, fallback: Caller
    ) -> None:
        self._view = view
        self._service = service
        self._store = store
        self._fallback = fallback
        self._inline = InlineDecisions(service)

    def _who(self) -> Caller:
        return current_caller.get() or self._fallback

    # -- the middleware ------------------------------------------------------------------------

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Advertise the tasks at 2025-11-25, and serve or refuse ``params.task`` before the tool runs."""
        if ctx.method == "initialize":
            return _advertise(await call_next(ctx))
        if ctx.method == "tools/list" and ctx.protocol_version == TASKS_VERSION:
            return _mark_tools(await call_next(ctx))
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping) and params.get("task") is not None:
            return await self._call_as_task(ctx, params, call_next)
        return await call_next(ctx)

    async def _call_as_task(
        self, ctx: ServerRequestContext[Any, Any], params: Mapping[str, Any], call_next: CallNext
    ) -> HandlerResult:
        name, version = str(params.get("name", "")), ctx.protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            if declared(ctx):
                return await call_next(ctx)  # the extension answers with a task the caller sees
            msg = (f"params.task is the 2025-11-25 experimental tasks; at {version} declare the extension "
                   f"{TASKS_EXTENSION!r} (the answer is then a task), or call without params.task")  # fmt: skip
            raise MCPError(code=types.INVALID_PARAMS, message=msg)
        if version != TASKS_VERSION:
            msg = (f"task-augmented calls need protocol {TASKS_VERSION} (this connection speaks {version}); "
                   "call without params.task")  # fmt: skip
            raise MCPError(code=types.INVALID_PARAMS, message=msg)
        if name not in TASK_TOOLS:
            msg = (f"tool {name!r} does not support task-augmented execution (taskSupport forbidden); "
                   f"the tools that do: {sorted(TASK_TOOLS)}")  # fmt: skip
            raise MCPError(code=types.METHOD_NOT_FOUND, message=msg)
        try:
            types.TaskMetadata.model_validate(params["task"])
        except ValidationError as exc:
            msg = f"params.task must be an object with an optional integer ttl: {exc.errors()[0]['msg']}"
            raise MCPError(code=types.INVALID_PARAMS, message=msg) from exc
        result = await call_next(ctx)
        structured = result.get("structuredContent") if isinstance(result, Mapping) else None
        if not isinstance(result, Mapping) or result.get("isError") or not isinstance(structured, dict):
            # Refused by the tool, so nothing was started: a JSON-RPC error, not a task that never was.
            text = _refusal_text(result) if isinstance(result, Mapping) else ""
            raise MCPError(code=types.INVALID_PARAMS, message=text or f"{name} was refused")
        wid = str(structured.get("workflow_id", ""))
        # The record was written before the tool returned: this read is what tasks/get will see.
        task = draft_task(await self._view.task(await self._read(wid)))
        if task["status"] == "input_required":
            task["status"] = "working"
        log.info("tasks.created", task_id=wid, tool=name, status=task["status"], generation=TASKS_VERSION)
        said = (f"Started workflow {wid} as a task; it runs in the background and asks its decisions when "
                "tasks/result is called (or answer them with submit_decision).")  # fmt: skip
        return {"task": task, "_meta": {_IMMEDIATE: said}}

    async def _read(self, task_id: str) -> WorkflowStatus:
        return await as_task_error(task_id, self._service.get_status(self._who(), task_id))

    # -- tasks/* --------------------------------------------------------------------------------

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        """``tasks/get``: the task as it stands."""
        del ctx
        return draft_task(await self._view.task(await self._read(params.task_id)))

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        """``tasks/cancel``: cancel the workflow (a finished one is refused, as the draft says)."""
        del ctx
        caller, wid = self._who(), params.task_id
        st = await self._read(wid)
        if st.status in TERMINAL:
            msg = f"task {wid!r} is already {_STATUS_OF[st.status]} and cannot be cancelled"
            raise MCPError(code=types.INVALID_PARAMS, message=msg)
        await as_task_error(wid, self._service.cancel(caller, wid))
        # The run stops at once, but the status is written by the instance that holds it.
        st = await as_task_error(
            wid, self._service.wait_status(caller, wid, _CANCEL_WAIT_SECONDS, until=[Status.CANCELLED])
        )
        log.info("tasks.cancelled", task_id=wid, caller=caller.name, generation=TASKS_VERSION)
        return {**draft_task(await self._view.task(st)), "status": "cancelled"}

    async def list(self, ctx: ServerRequestContext[Any, Any], params: ListTasksParams) -> HandlerResult:
        """``tasks/list``: the caller's workflows as tasks, newest first, 50 a page."""
        del ctx
        page = await as_task_error(
            "", self._service.list_workflows(self._who(), cursor=params.cursor, limit=50)
        )
        tasks = [
            {"taskId": w.workflow_id, "status": _STATUS_OF.get(w.status, "working"),
             "createdAt": iso(w.created_at), "lastUpdatedAt": iso(w.updated_at), "ttl": self._view.ttl_ms(w)}
            for w in page.workflows
        ]  # fmt: skip
        return {"tasks": tasks, **({"nextCursor": page.next_cursor} if page.next_cursor else {})}

    async def result(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        """``tasks/result``: wait for the end (asking the decisions met on the way), then the call's result."""
        caller, wid = self._who(), params.task_id
        st = await self._read(wid)
        asked: set[str] = set()
        feed = WaitFeed(Context(request_context=ctx), self._store, wid)
        async with feed.running():
            while st.status not in TERMINAL:
                if st.status == Status.WAITING_DECISION:
                    await self._ask(ctx, caller, st, asked)
                st = await as_task_error(
                    wid, self._service.wait_status(caller, wid, _WAIT_SECONDS, feed.on_change)
                )
        related = {RELATED_TASK: {"taskId": wid}}
        if st.status == Status.COMPLETED:
            return {**await self._view.result(st), "_meta": related}
        said = (await self._view.task(st)).get("statusMessage") or st.status
        return {"content": [{"type": "text", "text": said}], "isError": True, "_meta": related}

    async def _ask(
        self, ctx: ServerRequestContext[Any, Any], caller: Caller, st: WorkflowStatus, asked: set[str]
    ) -> None:
        """Ask the open decisions not yet asked in this call, with the related-task ``_meta``."""
        if not caller.can("decide") or PLAIN_REPLY.get():
            return
        session = ctx.session
        for d in st.pending_decisions:
            if d.id in asked:
                continue
            asked.add(d.id)
            wire = form(st, d).model_dump(by_alias=True, mode="json", exclude_none=True)
            wire["_meta"] = {RELATED_TASK: {"taskId": st.workflow_id}}
            if not session.can_send_request:
                # Stateless HTTP: the answer comes as a POST of its own, recorded wherever it lands.
                await send_unanswered_request(session, answer_request_id(st.workflow_id, d.id),
                                              "elicitation/create", wire)  # fmt: skip
                continue
            if not declares_form(Context(request_context=ctx)):
                return
            try:
                result = await session.send_request(
                    types.ElicitRequest(params=types.ElicitRequestFormParams.model_validate(wire)), types.ElicitResult,
                    metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
                )  # fmt: skip
            except (NoBackChannelError, MCPError) as exc:
                log.info("tasks.decision_not_asked", task_id=st.workflow_id, error=str(exc))
                return
            try:
                await self._inline.record(caller, st.workflow_id, d.id, result)
            except OrchestratorError as exc:
                # An answer the ledger refuses (not one of the options): asked again at the next change.
                asked.discard(d.id)
                log.info(
                    "tasks.decision_answer_refused", task_id=st.workflow_id, decision_id=d.id, error=str(exc)
                )


def _advertise(result: HandlerResult) -> HandlerResult:
    """``capabilities.tasks`` in a 2025-11-25 ``initialize`` result."""
    if isinstance(result, dict) and result.get("protocolVersion") == TASKS_VERSION:
        caps = result.get("capabilities")
        if isinstance(caps, dict):
            caps["tasks"] = _CAPABILITY
    return result


def _mark_tools(result: HandlerResult) -> HandlerResult:
    """``execution.taskSupport: "optional"`` on the tools that answer with a task."""
    if isinstance(result, dict):
        for tool in result.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name") in TASK_TOOLS:
                tool["execution"] = {"taskSupport": "optional"}
    return result
