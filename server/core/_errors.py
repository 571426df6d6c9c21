"""How the error tree (`adapters.errors`) reads to a caller: one table for MCP tools, resources, JSON-RPC
methods and HTTP routes.

A refused request names what was wrong and what is allowed; Redis being away reads "unavailable" (try
again); tampered state reads "integrity_error" and is never used. Anything not in the tree is a bug and
is left to propagate (the SDK reports it as an internal error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from adapters import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    OrchestratorError,
    PermissionDeniedError,
    QuotaExceededError,
    RequestError,
    StoreUnavailableError,
)

__all__ = ["UNAVAILABLE", "Refusal", "refusal", "refused_as"]

T = TypeVar("T")

UNAVAILABLE = "the workflow store (Redis) cannot be reached right now; try again shortly"

_HTTP_STATUS: tuple[tuple[type[RequestError], int], ...] = (
    (QuotaExceededError, 429),
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (InvalidArgumentError, 400),
    (ConflictError, 409),
)


@dataclass(frozen=True)
class Refusal:
    """What a caller is told.

    Attributes:
        code: ``invalid_argument | not_found | permission_denied | conflict | quota_exceeded | unavailable |
            integrity_error``.
        message: what was wrong and what is allowed (or what to do).
        http_status: the status of an HTTP answer.
        not_found: the thing asked for does not exist (or is not the caller's to see).
        field: the argument that was wrong (``workflow_id``, ``options.scenes``), when there is one.
        retry_after: seconds to wait before trying again (a quota), when known.
    """

    code: str
    message: str
    http_status: int
    not_found: bool = False
    field: str = ""
    retry_after: float | None = None

    @property
    def text(self) -> str:
        """The whole message a client reads: ``<code>: <message>``."""
        return f"{self.code}: {self.message}"

    def __str__(self) -> str:
        return self.message


async def refused_as(coro: Awaitable[T], make: Callable[[Refusal, OrchestratorError], Exception]) -> T:
    """Await an operation; a refusal of the error tree is raised as what `make` makes of it (the transport's
    own error), anything else propagates (a bug)."""
    try:
        return await coro
    except OrchestratorError as exc:
        said = refusal(exc)
        if said is None:
            raise
        raise make(said, exc) from exc


def refusal(exc: BaseException) -> Refusal | None:
    """What a caller is told for `exc`; None when it is not one of the service's own errors (a bug)."""
    if isinstance(exc, RequestError):
        status = next((code for cls, code in _HTTP_STATUS if isinstance(exc, cls)), 400)
        field = exc.field if isinstance(exc, InvalidArgumentError) else ""
        after = exc.retry_after if isinstance(exc, QuotaExceededError) else None
        return Refusal(exc.code, exc.message, status, isinstance(exc, NotFoundError), field, after)
    if isinstance(exc, StoreUnavailableError):
        return Refusal("unavailable", UNAVAILABLE, 503)
    if isinstance(exc, IntegrityError):
        return Refusal("integrity_error", f"{exc}; the record is kept for inspection and not used", 409)
    return None
