"""Errors of the orchestrator's own operations (the MCP surface translates them to tool errors).

    ServiceError
    ├── InvalidArgumentError   a caller's argument is wrong: names the field and why
    ├── NotFoundError          unknown workflow, decision or checkpoint (also: not yours to see)
    ├── PermissionDeniedError  the caller's role does not allow this operation
    └── ConflictError          the request contradicts the current state (decision already taken, ...)

Errors of outside services are in adapters.errors (transient / permanent / recoverable).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConflictError", "InvalidArgumentError", "NotFoundError", "PermissionDeniedError", "ServiceError"]


class ServiceError(Exception):
    """Root of the errors a caller of the orchestrator can get back."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class InvalidArgumentError(ServiceError):
    """A wrong argument; `field` names it."""

    code = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid argument {field!r}: {reason}", field=field)
        self.field = field


class NotFoundError(ServiceError):
    """The thing does not exist, or the caller may not see it (never "forbidden")."""

    code = "not_found"


class ConflictError(ServiceError):
    """The request contradicts the workflow's current state."""

    code = "conflict"


class PermissionDeniedError(ServiceError):
    """The caller's role ranks below what the operation needs."""

    code = "permission_denied"
