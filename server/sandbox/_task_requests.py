"""The Task Service stand-in's reading of requests: the real build's validation answers, field for field."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "PROJECT_RE",
    "REJECTED_TYPES",
    "ROW",
    "error",
    "invalid",
    "is_uuid",
    "now",
    "problem",
    "stamp",
    "validate",
]

PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
TYPES = ("generate_video", "generate_image", "process_audio", "render_animation", "test_prompt",
         "evaluate_department", "automated_gather_creation")  # fmt: skip
REJECTED_TYPES = {"render_animation", "test_prompt", "automated_gather_creation"}
# A task-list row: exactly these, completed_at and result_url always null.
ROW = ("task_id", "task_type", "status", "created_at", "completed_at", "result_url")


def now() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


def stamp() -> str:
    """Now as the build stamps its answers: UTC with a ``Z``."""
    return now().isoformat().replace("+00:00", "Z")


def error(status: int, msg: str) -> JSONResponse:
    """A route's refusal: ``{"error", "message", "timestamp"}``."""
    return JSONResponse({"error": msg, "message": msg, "timestamp": stamp()}, status_code=status)


def invalid(*problems: dict[str, Any]) -> JSONResponse:
    """A validation refusal: 422 ``{"detail": [...]}``."""
    return JSONResponse({"detail": list(problems)}, status_code=422)


def problem(kind: str, loc: list[Any], msg: str, value: Any) -> dict[str, Any]:
    """One pydantic problem."""
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def is_uuid(value: str) -> bool:
    """True for a UUID (the routes answer 400 for anything else)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def validate(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The real build's pydantic refusals of a submit body, in their shapes (empty when it is accepted)."""
    out: list[dict[str, Any]] = []
    for name in ("project_id", "task_type", "task_data"):
        if name not in body:
            out.append(problem("missing", ["body", name], "Field required", body))
    pid = body.get("project_id")
    if isinstance(pid, str) and len(pid.strip()) > 100:
        out.append(
            problem(
                "string_too_long",
                ["body", "project_id"],
                "String should have at most 100 characters",
                pid,
            )
        )
    elif "project_id" in body and not (isinstance(pid, str) and PROJECT_RE.match(pid.strip())):
        out.append(problem("value_error", ["body", "project_id"], "Value error, Project ID must contain only "
                            "alphanumeric, underscore, and dash characters", pid))  # fmt: skip
    if "task_type" in body and body["task_type"] not in TYPES:
        listed = ", ".join(f"'{t}'" for t in TYPES[:-1]) + f" or '{TYPES[-1]}'"
        out.append(problem("enum", ["body", "task_type"], f"Input should be {listed}", body["task_type"]))
    if "task_data" in body and not isinstance(body["task_data"], dict):
        out.append(
            problem(
                "dict_type",
                ["body", "task_data"],
                "Input should be a valid dictionary",
                body["task_data"],
            )
        )
    if body.get("priority", 2) not in (1, 2, 3) or isinstance(body.get("priority"), bool):
        out.append(problem("enum", ["body", "priority"], "Input should be 1, 2 or 3", body.get("priority")))
    cb = body.get("callback_url")
    if cb is not None and not (isinstance(cb, str) and cb.startswith(("http://", "https://"))):
        out.append(
            problem(
                "value_error",
                ["body", "callback_url"],
                "Value error, Callback URL must be HTTP or HTTPS",
                cb,
            )
        )
    return out
