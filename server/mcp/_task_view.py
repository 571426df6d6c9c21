"""How a workflow reads as a task: status messages, decision forms, deliverable URIs, answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from adapters import Status
from server.core import WorkflowStatus

__all__ = ["MAX_COMMENT", "answer", "decision_form", "deliverable_uris", "iso", "working_message"]

MAX_COMMENT = 2_000


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
