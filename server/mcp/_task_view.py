"""How a workflow reads as a task, in both generations' tasks: the task, its status message, its result
(the production summary), decision forms, deliverable URIs, answers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError

from adapters import TERMINAL, OrchestratorError, RequestError, Status
from server.core import (
    Caller,
    OrchestratorService,
    Refusal,
    WorkflowStatus,
    WorkflowSummary,
    current_caller,
    refused_as,
)

__all__ = [
    "MAX_COMMENT",
    "TaskView",
    "answer",
    "as_task_error",
    "decision_form",
    "deliverable_uris",
    "iso",
    "not_found",
    "working_message",
]

MAX_COMMENT = 2_000
# A status read costs one HGETALL; a person waiting on a production does not need it faster.
POLL_WORKING_MS = 2_000
POLL_WAITING_MS = 5_000

T = TypeVar("T")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def working_message(st: WorkflowStatus) -> str:
    where = ": ".join(p for p in (st.phase, st.step) if p) or "starting"
    if st.status == Status.QUEUED:
        head = f"queued: {st.message or 'waiting for a worker'}"
        return f"{head} (at {where}, {st.percent:.0f}%)" if st.phase else head
    if st.status == Status.PAUSED:
        return f"paused at {where} ({st.percent:.0f}%); resume_workflow continues it"
    text = f"{where} ({st.percent:.0f}%)"
    if st.message and st.message not in {"running", st.step}:
        text += f": {st.message}"
    if st.agents_running:
        text += f"; agents running: {', '.join(st.agents_running)}"
    if st.waiting_reason:
        text += f"; waiting for {st.waiting_reason}"
    return text


def decision_form(decision: Any) -> dict[str, Any]:
    """One pending decision as a form elicitation: the options as an enum and an optional comment."""
    choice: dict[str, Any] = {"type": "string", "title": "Choice", "description": decision.question}
    if decision.options:
        choice["enum"] = list(decision.options)
        recommended = decision.context.get("recommended")
        if recommended in decision.options:
            choice["default"] = recommended
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": decision.question,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "choice": choice,
                    "comment": {
                        "type": "string",
                        "title": "Comment",
                        "description": "optional reason, kept in the audit log",
                        "maxLength": MAX_COMMENT,
                    },
                },
                "required": ["choice"],
            },
        },
    }


def deliverable_uris(value: Any) -> list[str]:
    """The URIs inside a deliverable's value (a URL or file, a list of them, or records holding them)."""
    if isinstance(value, str):
        if "://" in value:
            return [value]
        return [Path(value).as_uri()] if value.startswith("/") else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in deliverable_uris(v)]
    if isinstance(value, list):
        return [u for v in value for u in deliverable_uris(v)]
    return []


def answer(key: str, response: Any) -> tuple[str | None, str]:
    """(choice, comment) of one elicitation response; choice None when the person declined.

    Raises:
        MCPError: the response is not an elicitation result with a string ``choice``.
    """
    if not isinstance(response, dict):
        msg = f"inputResponses[{key!r}] must be an elicitation result object, got {type(response).__name__}"
        raise MCPError(code=types.INVALID_PARAMS, message=msg)
    action = response.get("action", "accept")
    if action in {"decline", "cancel"}:
        return None, ""
    if action != "accept":
        msg = f"inputResponses[{key!r}].action: {action!r} is not one of ['accept', 'decline', 'cancel']"
        raise MCPError(code=types.INVALID_PARAMS, message=msg)
    content = response.get("content")
    choice = content.get("choice") if isinstance(content, dict) else None
    if not isinstance(choice, str) or not choice:
        msg = f"inputResponses[{key!r}].content.choice must be a non-empty string (one of the decision's options)"
        raise MCPError(code=types.INVALID_PARAMS, message=msg)
    comment = content.get("comment", "") if isinstance(content, dict) else ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        msg = f"inputResponses[{key!r}].content.comment must be a string of at most {MAX_COMMENT} characters"
        raise MCPError(code=types.INVALID_PARAMS, message=msg)
    return choice, comment


def not_found(task_id: str) -> MCPError:
    return MCPError(code=types.INVALID_PARAMS, message=f"Failed to retrieve task: task {task_id!r} not found")


async def as_task_error(task_id: str, coro: Awaitable[T]) -> T:
    """The service's refusals as JSON-RPC errors (another project's task is not found, as in the tools)."""

    def refused(said: Refusal, exc: OrchestratorError) -> Exception:
        # A workflow id that is wrong, unknown or another project's: the task is not found.
        if said.field == "workflow_id" or (said.not_found and isinstance(exc, RequestError)
                                           and exc.details.get("workflow_id")):  # fmt: skip
            return not_found(task_id)
        code = types.INVALID_PARAMS if isinstance(exc, RequestError) else types.INTERNAL_ERROR
        return MCPError(code=code, message=said.text)

    return await refused_as(coro, refused)


class TaskView:
    """A workflow as a task (the wire shape of the 2026-07-28 extension; the 2025-11-25 shape is derived).

    Args:
        service: the operations (the same scopes, ledger and audit as the tools).
        fallback: the caller when the transport authenticated nobody.
    """

    def __init__(self, service: OrchestratorService, fallback: Caller) -> None:
        self._service = service
        self._fallback = fallback

    def _who(self) -> Caller:
        return current_caller.get() or self._fallback

    def ttl_ms(self, st: WorkflowStatus | WorkflowSummary) -> int:
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
                    "result": await self.result(st)}  # fmt: skip
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
                return {**base, "status": "input_required", "pollIntervalMs": POLL_WAITING_MS,
                        "statusMessage": f"waiting for {len(open_)} decision(s) at "
                                         f"{st.phase or 'the workflow'}: {questions}",
                        "inputRequests": {d.id: decision_form(d) for d in open_}}  # fmt: skip
            return {**base, "status": "working", "pollIntervalMs": POLL_WORKING_MS,
                    "statusMessage": "decision received, resuming"}  # fmt: skip
        poll = POLL_WAITING_MS if st.status == Status.PAUSED else POLL_WORKING_MS
        return {**base, "status": "working", "pollIntervalMs": poll, "statusMessage": working_message(st)}

    @staticmethod
    def _done_message(st: WorkflowStatus) -> str:
        outcome = st.result.get("outcome", "completed")
        made = st.result.get("deliverables") or []
        return f"{st.workflow} {outcome}: {len(made)} deliverable(s)" + (
            f" ({', '.join(made)})" if made else ""
        )

    async def result(self, st: WorkflowStatus) -> dict[str, Any]:
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
