"""The one error tree of the service: every error raised on purpose, from the adapters up to the tools.

    OrchestratorError                 root: everything this service raises on purpose
    ├── OutsideError                  an outside service failed: what graph nodes may route around
    │   │                             (carries the service, operation, step and the service's own reason)
    │   ├── TransientError            retry with backoff (connect errors, timeouts, 429, 5xx)
    │   │   ├── CircuitOpenError      the service's breaker is open (adapters._resilience)
    │   │   └── OutcomeUnknownError   a request that changes something was sent and its answer lost: it may
    │   │                             have taken effect; reconcile before sending it again (never retried blindly)
    │   ├── PermanentError            never retry (4xx, bad data, a contract the service does not honour)
    │   │   └── StateTooLargeError    one value of a workflow's state is above STATE_MAX_BYTES
    │   └── RecoverableError          this agent cannot do it; route to an alternative or ask a human
    │       └── CapabilityMissingError  the service does not offer the operation (an unknown tool)
    ├── StoreUnavailableError         Redis cannot be reached (translated once, where the adapters call it):
    │                                 a run is left for later, a caller is told "unavailable"
    ├── IntegrityError                signed state was changed, moved, planted or removed: never used
    ├── BudgetExceededError           a workflow reached one of its budgets: it stops, failed
    ├── EmbeddedRedisError            the private redis-server could not be started or reached
    │   └── DataDirLockedError        another live process owns the data folder
    └── RequestError                  a caller's request is refused; names what was wrong and what is allowed
        ├── InvalidArgumentError      a wrong argument: names the field, the value and what is allowed
        │   └── OptionError           a workflow option (graphs: the options contract)
        ├── NotFoundError             unknown workflow, decision or checkpoint (also: another project's)
        ├── ConflictError             contradicts the current state (decision already taken, ...)
        ├── PermissionDeniedError     the caller's role ranks below what the operation needs
        └── QuotaExceededError        a project's or key's quota is used up: names it, the use and when to retry

Adapters translate httpx, websockets, redis and pybreaker exceptions into this tree at the boundary.
Graph nodes catch `OutsideError` (never the root: a budget or an integrity failure must stop the run).
`server.core` turns the tree into MCP and HTTP errors, in one table (`server/core/_errors.py`).
"""

from __future__ import annotations

from typing import Any, Self

__all__ = [
    "BudgetExceededError",
    "CapabilityMissingError",
    "CircuitOpenError",
    "ConflictError",
    "DataDirLockedError",
    "EmbeddedRedisError",
    "IntegrityError",
    "InvalidArgumentError",
    "NotFoundError",
    "OptionError",
    "OrchestratorError",
    "OutcomeUnknownError",
    "OutsideError",
    "PermanentError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RecoverableError",
    "RequestError",
    "StateTooLargeError",
    "StoreUnavailableError",
    "TransientError",
]


class OrchestratorError(Exception):
    """Root of every error this service raises on purpose."""


class OutsideError(OrchestratorError):
    """An outside service (Task Service, Brain, Auto-Movie, the model) failed.

    What a producer needs to act on it rides along (set with `about`, "" when not known): the `service`,
    the `operation` (a job type, a tool, a route), the workflow `step` and the service's own `reason`.
    """

    service: str = ""
    operation: str = ""
    step: str = ""
    reason: str = ""

    def about(self, *, service: str = "", operation: str = "", step: str = "", reason: str = "") -> Self:
        """Record what failed where (only the parts given; the others keep their value)."""
        for name, value in (
            ("service", service),
            ("operation", operation),
            ("step", step),
            ("reason", reason),
        ):
            if value:
                setattr(self, name, value)
        return self


class TransientError(OutsideError):
    """A failure that may succeed when tried again later."""


class CircuitOpenError(TransientError):
    """The service's breaker is open: calls are not attempted until it half-opens."""


class OutcomeUnknownError(TransientError):
    """A request that changes something (a job submission) was sent and its answer lost.

    A timeout, a dropped connection or a 5xx after sending: the service may have acted on it. It counts
    against the breaker like any transient failure, but `ServiceGuard` never repeats it: the caller finds
    out what happened first (the Task Service has no idempotency, a second submit is a second job).
    """


class PermanentError(OutsideError):
    """A failure that will fail the same way however often it is tried."""


class RecoverableError(OutsideError):
    """The chosen agent or service cannot do this; another agent or a human may."""


class CapabilityMissingError(RecoverableError):
    """The service does not offer the operation at all (e.g. a Brain build without the tool): never retried."""


class StateTooLargeError(PermanentError):
    """One value of a workflow's state serialized above `STATE_MAX_BYTES`."""


class StoreUnavailableError(OrchestratorError):
    """Redis (the workflow store, the checkpoints) cannot be reached right now."""


class IntegrityError(OrchestratorError):
    """A signed value failed verification: changed, moved, forged or unsigned."""


class BudgetExceededError(OrchestratorError):
    """A workflow reached one of its budgets.

    Not an `OutsideError`: nodes that tolerate outside failures (progress write-back, a missing project)
    must not swallow it.

    Attributes:
        budget: which budget (`agent_executions`, `outside_jobs`, `fan_out`, `step_seconds`).
        limit: its ceiling for this workflow.
        reached: the figure that went over it.
        where: the step it happened at.
    """

    def __init__(self, budget: str, limit: float, reached: float, where: str = "") -> None:
        at = f" at step {where!r}" if where else ""
        super().__init__(
            f"budget {budget} exceeded{at}: reached {reached:g}, the ceiling is {limit:g} "
            f"(the deployment's BUDGET_{budget.upper()}, or less if the workflow's max_{budget} option asked "
            "for less); an operator raises the budget, then retry_step continues from this step"
        )
        self.budget, self.limit, self.reached, self.where = budget, limit, reached, where


class EmbeddedRedisError(OrchestratorError):
    """The private redis-server could not be started, reached or stopped."""


class DataDirLockedError(EmbeddedRedisError):
    """The data folder is locked by another live process."""


class RequestError(OrchestratorError):
    """Root of the errors a caller of the orchestrator gets back for a refused request."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgumentError(RequestError):
    """A wrong argument; `field` names it, `reason` says what is allowed."""

    code = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid argument {field!r}: {reason}", field=field)
        self.field = field
        self.reason = reason


class OptionError(InvalidArgumentError):
    """An option a workflow does not accept: names the option, the value given and what is allowed.

    ``str()`` is the reason alone (``scenes=1000000000 is not accepted by movie_production; allowed: ...``);
    as a request error its field is ``options.<option>``.
    """

    def __init__(
        self, workflow: str, option: str, value: Any, allowed: str, *, unknown: bool = False
    ) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if unknown:
            text = f"{workflow} has no option {option!r} (given {shown}); its options are {allowed}"
        else:
            text = f"{option}={shown} is not accepted by {workflow}; allowed: {allowed}"
        super().__init__("options" if option == "options" else f"options.{option}", text)
        self.workflow, self.option, self.value, self.allowed = workflow, option, value, allowed

    def __str__(self) -> str:
        return self.reason


class NotFoundError(RequestError):
    """The thing does not exist, or the caller may not see it (never "forbidden")."""

    code = "not_found"


class ConflictError(RequestError):
    """The request contradicts the workflow's current state."""

    code = "conflict"


class PermissionDeniedError(RequestError):
    """The caller's role ranks below what the operation needs."""

    code = "permission_denied"


class QuotaExceededError(RequestError):
    """A quota of the caller's project or key is used up; nothing was written.

    Attributes:
        scope: ``project`` or ``key``.
        tenant: the project id or the key's name.
        quota: ``max_in_flight`` or ``starts_per_minute``.
        used: how much of it is in use.
        limit: the quota.
        retry_after: seconds until a start is admitted again (None: when one in flight ends).
    """

    code = "quota_exceeded"

    def __init__(
        self, scope: str, tenant: str, quota: str, used: int, limit: int, retry_after: float | None, *,
        source: str = "", action: str = "started",
    ) -> None:  # fmt: skip
        if quota == "max_in_flight":
            use = f"has {used} productions in flight"
        else:
            use = f"started {used} productions in the last 60 s"
        when = (
            f"Retry in {retry_after:.1f} s." if retry_after is not None
            else "Retry when one of them completes, fails or is cancelled."
        )  # fmt: skip
        set_by = f" ({source})" if source else ""
        super().__init__(
            f"{scope} {tenant!r} {use} and its quota {quota} is {limit}{set_by}; nothing was {action}. {when}",
            scope=scope, tenant=tenant, quota=quota, used=used, limit=limit, retry_after=retry_after,
        )  # fmt: skip
        self.scope, self.tenant, self.quota, self.used, self.limit = scope, tenant, quota, used, limit
        self.retry_after = retry_after
