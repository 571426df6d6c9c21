"""The orchestrator's operations, independent of MCP: validate, touch Redis, enqueue, answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import structlog

from adapters import (
    TERMINAL,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OptionError,
    PermissionDeniedError,
    QuotaExceededError,
    QuotaStore,
    SecurityAudit,
    Status,
    WorkflowRecord,
    WorkflowStore,
    tracing,
)
from graphs import BUDGETS, WORKFLOWS, BudgetLimits, registry, validate_options
from server.core._caller import Caller
from server.core._checkpoints import Checkpoints
from server.core._models import (
    AgentInfo,
    AgentList,
    CheckpointDetail,
    CheckpointList,
    Decision,
    DecisionResult,
    StartResult,
    WorkflowList,
    WorkflowStatus,
    WorkflowSummary,
)
from server.core._quotas import QuotaPolicy
from server.telemetry import Metrics

__all__ = ["OrchestratorService"]

log = structlog.get_logger(__name__)

_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_WID_RE = re.compile(r"^wf-[0-9a-f]{16}$")
_IDEM_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_MAX_OPTIONS_BYTES = 16_384
_MAX_COMMENT = 2_000
_STATUSES = frozenset(Status)


def _open_decisions(rec: WorkflowRecord) -> list[dict[str, Any]]:
    """The decisions still open. The record lists those taken (written with each answer), while the open ones
    it lists were written by the run that parked, which has not resumed yet when an answer comes."""
    return [p for p in rec.pending if p.get("id") not in rec.decided]


def _status(
    rec: WorkflowRecord, services: dict[str, str] | None = None, position: tuple[int, int] | None = None
) -> WorkflowStatus:
    pending = [Decision.model_validate(p) for p in _open_decisions(rec)]
    status, message = rec.status, rec.message
    if status == Status.WAITING_DECISION and rec.pending and not pending:
        status, message = Status.QUEUED, "decision received, resuming"
    return WorkflowStatus(
        workflow_id=rec.id,
        project_id=rec.project_id,
        workflow=rec.workflow,
        status=status,
        phase=rec.phase,
        step=rec.step,
        percent=rec.percent,
        message=message,
        agents_running=rec.agents_running,
        pending_decisions=pending,
        last_error=rec.last_error,
        waiting_reason=rec.waiting_reason,
        services=services or {},
        created_at=rec.created_at,
        updated_at=rec.updated_at,
        result=rec.result,
        forked_from=rec.forked_from,
        queue_position=position[0] if position is not None else None,
        queued_in_project=position[1] if position is not None else None,
    )


def _already_decided(wid: str, decision_id: str, choice: str, earlier: dict[str, Any]) -> DecisionResult:
    """The same answer again is accepted (idempotent); a different one is refused with the earlier choice.

    Raises:
        ConflictError: the decision was already taken with another choice.
    """
    if earlier.get("choice") == choice:
        return DecisionResult(accepted=True, reason="already recorded with this choice", workflow_id=wid,
                              decision_id=decision_id, choice=choice, decided_by=str(earlier.get("by", "")))  # fmt: skip
    msg = f"decision {decision_id!r} of workflow {wid!r} was already taken: {earlier.get('choice')!r} by {earlier.get('by')!r}"
    raise ConflictError(msg, earlier_choice=earlier.get("choice"), decided_by=earlier.get("by"))


def _check_open(rec: WorkflowRecord, decision_id: str, choice: str) -> None:
    """The decision is open and the choice one of its options.

    Raises:
        NotFoundError: no open decision has that id.
        InvalidArgumentError: the choice is not one of the decision's options.
    """
    open_ = {p["id"]: p for p in rec.pending}
    if decision_id not in open_:
        msg = f"unknown or closed decision {decision_id!r} for workflow {rec.id!r}"
        if rec.pending:
            msg += f"; open decisions: {sorted(open_)}"
        raise NotFoundError(msg, decision_id=decision_id)
    options = open_[decision_id].get("options") or []
    if options and choice not in options:
        raise InvalidArgumentError("choice", f"{choice!r} is not one of {options}")


class OrchestratorService:
    """Start, inspect, steer and decide workflows.

    Args:
        store: the Redis workflow store.
        checkpoints: the workflows' checkpoints (history, forks, final values).
        audit: the security audit stream (denied calls, decisions).
        watch: the change notices of one workflow while in its block (`RedisNotifier.watch`).
        brief_max_chars: longest brief accepted.
        budgets: the deployment's budgets; a workflow's options may ask for less, never more.
        cancel_jobs: cancels a workflow's outside jobs (the Task Service's).
        health: the outside services' circuit states.
        notice_backstop_seconds: a status wait re-reads the record this often, in case a change notice
            was lost (while this instance reconnected to Redis).
        quotas: the reservations of workflows in flight and of starts (None: no quotas).
        quota_policy: the quotas of projects and keys.
        metrics: the process's metrics (quota refusals).
    """

    def __init__(
        self,
        store: WorkflowStore,
        *,
        checkpoints: Checkpoints,
        audit: SecurityAudit,
        watch: Callable[[str], AbstractContextManager[asyncio.Queue[str]]],
        brief_max_chars: int = 20_000,
        budgets: BudgetLimits | None = None,
        cancel_jobs: Callable[[str], Awaitable[None]] | None = None,
        health: Callable[[], dict[str, str]] | None = None,
        notice_backstop_seconds: float = 5.0,
        quotas: QuotaStore | None = None,
        quota_policy: QuotaPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.quotas = quotas
        self.quota_policy = quota_policy or QuotaPolicy()
        self._metrics = metrics
        self.checkpoints_of = checkpoints
        self.brief_max_chars = brief_max_chars
        self.budgets = budgets or BudgetLimits()
        self._cancel_jobs = cancel_jobs
        self._health = health or dict
        self._audit = audit
        self._watch = watch
        self._backstop = notice_backstop_seconds

    @property
    def retention_seconds(self) -> int:
        """How long a finished workflow's keys live."""
        return self.store.retention_seconds

    async def _require(self, caller: Caller, needed: str, action: str) -> None:
        if caller.can(needed):
            return
        await self._audit.record(
            "access.denied", caller=caller.name, role=caller.role, action=action, needed=needed
        )
        msg = f"role {caller.role!r} of key {caller.name!r} may not {action}; it needs {needed!r} or above"
        raise PermissionDeniedError(msg)

    # -- helpers ------------------------------------------------------------------------------

    async def _update(
        self,
        caller: Caller,
        workflow_id: str,
        fields: dict[str, Any],
        event: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Write `fields` to the workflow's record with its `event` (and `data`), in the caller's name."""
        await self.store.update(workflow_id, fields, event=event, who=caller.name,
                                correlation_id=caller.correlation_id, event_data=data)  # fmt: skip

    async def _visible(self, caller: Caller, workflow_id: str) -> WorkflowRecord:
        if not isinstance(workflow_id, str) or not _WID_RE.match(workflow_id):
            raise InvalidArgumentError("workflow_id", "must look like 'wf-' followed by 16 hex digits")
        rec = await self.store.get(workflow_id)
        if rec is not None:
            tracing.annotate(mo_workflow_id=workflow_id, mo_project_id=rec.project_id)
        if rec is not None and not caller.sees(rec.project_id):
            await self._audit.record(
                "access.denied", caller=caller.name, workflow_id=workflow_id, reason="project scope"
            )
        if rec is None or not caller.sees(rec.project_id):
            msg = f"unknown workflow {workflow_id!r}"
            raise NotFoundError(msg, workflow_id=workflow_id)
        return rec

    @staticmethod
    def resources(wid: str) -> dict[str, str]:
        """The resource URIs of a workflow."""
        return {
            "state": f"workflow://{wid}/state",
            "decisions": f"workflow://{wid}/decisions",
            "events": f"workflow://{wid}/events",
            "checkpoints": f"workflow://{wid}/checkpoints",
        }

    # -- operations ---------------------------------------------------------------------------

    async def start_workflow(
        self,
        caller: Caller,
        *,
        project_id: str,
        workflow: str = "movie_production",
        brief: str = "",
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> StartResult:
        """Validate, record and enqueue a workflow; returns at once.

        Raises:
            InvalidArgumentError: an argument is wrong (nothing is written).
            NotFoundError: the caller's key does not cover the project.
        """
        await self._require(caller, "operate", "start workflows")
        if not isinstance(project_id, str) or not _PROJECT_RE.match(project_id):
            raise InvalidArgumentError(
                "project_id", "must be 1-100 characters of letters, digits, '_' or '-'"
            )
        if workflow not in WORKFLOWS:
            raise InvalidArgumentError("workflow", f"unknown workflow; use one of {sorted(WORKFLOWS)}")
        if len(brief) > self.brief_max_chars:
            raise InvalidArgumentError(
                "brief", f"is {len(brief)} characters; at most {self.brief_max_chars} are accepted"
            )
        if len(json.dumps(options or {}, default=str)) > _MAX_OPTIONS_BYTES:
            raise InvalidArgumentError("options", f"larger than {_MAX_OPTIONS_BYTES} bytes as JSON")
        opts = self._options(workflow, options)
        if idempotency_key is not None and not _IDEM_RE.match(idempotency_key):
            raise InvalidArgumentError(
                "idempotency_key", "must be 1-200 characters of letters, digits, '_', '.', ':' or '-'"
            )
        if not caller.sees(project_id):
            msg = f"unknown project {project_id!r}"
            raise NotFoundError(msg, project_id=project_id)
        earlier = await self.store.find_idempotent(project_id, idempotency_key) if idempotency_key else None
        if earlier is not None:  # a repeat: never counted, never refused
            return self._started(earlier, created=False)
        wid = self.store.new_id()
        async with self._reserved(wid, caller, project_id, start=True) as keep:
            # The production's root span: every run of it, anywhere, is its child (its context is in the record).
            root = tracing.start(f"production {workflow}", mo_workflow_id=wid, mo_project_id=project_id,
                                 mo_workflow=workflow)  # fmt: skip
            rec, created = await self.store.create(
                project_id=project_id,
                workflow=workflow,
                brief=brief,
                options=opts,
                created_by=caller.name,
                correlation_id=caller.correlation_id,
                idempotency_key=idempotency_key,
                wid=wid,
                trace=tracing.carrier_of(root),
                queued_by=tracing.carrier(),
            )
            keep(created)  # a repeat that won the race: its reservation goes back
        if root is not None and created:  # an idempotent repeat's root is dropped, never exported
            root.end()
        tracing.annotate(mo_workflow_id=rec.id, mo_project_id=project_id)
        log.info("service.workflow_started", workflow_id=rec.id, project_id=project_id, created=created)
        return self._started(rec, created=created)

    def _started(self, rec: WorkflowRecord, *, created: bool) -> StartResult:
        return StartResult(workflow_id=rec.id, status=rec.status, project_id=rec.project_id, workflow=rec.workflow,
                           created=created, resources=self.resources(rec.id))  # fmt: skip

    @contextlib.asynccontextmanager
    async def _reserved(
        self, wid: str, caller: Caller, project_id: str, *, start: bool, action: str = "started"
    ) -> AsyncIterator[Callable[[bool], None]]:
        """A place for `wid` under the quotas of its project and the caller's key for the block; given back if the
        block fails, or if it says the place is not to be kept.

        Raises:
            QuotaExceededError: a quota is used up; nothing was written.
        """
        if self.quotas is None:
            yield lambda _: None
            return
        try:
            await self.quotas.reserve(wid, self.quota_policy.tenancy(caller, project_id), counts_as_start=start,
                                      action=action)  # fmt: skip
        except QuotaExceededError as exc:
            if self._metrics is not None:
                self._metrics.quota_refusals.labels(exc.scope, exc.quota).inc()
            log.info("service.quota_refused", project_id=project_id, scope=exc.scope, quota=exc.quota,
                     used=exc.used, limit=exc.limit)  # fmt: skip
            raise
        keep = [True]
        try:
            yield lambda kept: keep.__setitem__(0, kept)
        except BaseException:
            keep[0] = False
            raise
        finally:
            if not keep[0]:
                await self.quotas.release(wid)

    def _options(self, workflow: str, options: dict[str, Any] | None) -> dict[str, Any]:
        """The workflow's options checked against its contract and the deployment's budgets, as stored.

        Raises:
            OptionError: ``options.<name>``: the option, the value given and what is allowed.
        """
        typed = validate_options(workflow, WORKFLOWS[workflow].options, options)
        for budget in BUDGETS:
            asked = getattr(typed, f"max_{budget}")
            ceiling = getattr(self.budgets, budget)
            if asked is not None and asked > ceiling:
                raise OptionError(workflow, f"max_{budget}", asked, f"at most this deployment's {ceiling:g}")
        return typed.model_dump(mode="json", exclude_unset=True)

    async def get_status(self, caller: Caller, workflow_id: str) -> WorkflowStatus:
        """The workflow's status straight from its Redis record."""
        await self._require(caller, "read", "read workflows")
        return await self._status_of(await self._visible(caller, workflow_id))

    async def _status_of(self, rec: WorkflowRecord) -> WorkflowStatus:
        """The status of a record, with its place in its project's queue while it is queued."""
        position = None
        if rec.status == Status.QUEUED and self.quotas is not None:
            position = await self.quotas.position(rec.id, rec.project_id)
        return _status(rec, self._health(), position)

    async def seen_by(self, caller: Caller, workflow_id: str) -> WorkflowStatus | None:
        """The status of a workflow the caller may see, else None: for change notices, which are not
        requests (nothing is refused or audited)."""
        rec = await self.store.get(workflow_id)
        return _status(rec) if rec is not None and caller.sees(rec.project_id) else None

    async def wait_status(
        self,
        caller: Caller,
        workflow_id: str,
        wait_seconds: float,
        on_change: Callable[[float, str], Awaitable[None]] | None = None,
        until: list[str] | None = None,
    ) -> WorkflowStatus:
        """Wait up to `wait_seconds`: for the next change, or (with `until`) for one of those statuses.

        Every change seen while waiting is passed to `on_change` as (percent, what changed), from the
        change notice itself: the record is read only when the wait may end.
        """
        await self._require(caller, "read", "read workflows")
        if not 0 <= wait_seconds <= 300:
            raise InvalidArgumentError("wait_seconds", "must be between 0 and 300")
        if until is not None and not set(until) <= _STATUSES:
            raise InvalidArgumentError("until", f"use statuses among {sorted(_STATUSES)}")
        stop_at = {*TERMINAL, *(until or [])}
        # Listen first, then read the record once: a change after this read is a notice in the queue.
        with self._watch(workflow_id) as notices:
            current = await self._visible(caller, workflow_id)
            if wait_seconds == 0 or (current.status in stop_at and (until or current.status in TERMINAL)):
                return await self._status_of(current)
            percent = current.percent
            deadline = time.monotonic() + wait_seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    data = await asyncio.wait_for(notices.get(), min(left, self._backstop))
                except TimeoutError:
                    # A notice lost while this instance reconnected to Redis must not hold the wait
                    # to its end: look at the record now and then.
                    seen = await self.store.get(workflow_id) or current
                    if seen.updated_at == current.updated_at:
                        continue
                    data = f"updated|{seen.status}|{seen.percent}"
                what, _, rest = data.partition("|")
                status, _, pct = rest.partition("|")
                if pct:
                    percent = float(pct)
                if on_change is not None:
                    await on_change(percent, what)
                if not until or status in stop_at:
                    current = await self.store.get(workflow_id) or current
                    if not until or current.status in stop_at:
                        break
            return await self._status_of(current)

    async def submit_decision(
        self,
        caller: Caller,
        *,
        workflow_id: str,
        decision_id: str,
        choice: str,
        comment: str = "",
    ) -> DecisionResult:
        """Answer an open decision; idempotent (the first answer stands) and resumes the run.

        Raises:
            NotFoundError: unknown workflow or decision.
            InvalidArgumentError: the choice is not among the options, or the comment is too long.
            ConflictError: the decision was already taken with another choice, or is closed.
        """
        await self._require(caller, "decide", "submit decisions")
        rec = await self._visible(caller, workflow_id)
        if len(comment) > _MAX_COMMENT:
            raise InvalidArgumentError("comment", f"at most {_MAX_COMMENT} characters")
        earlier = (await self.store.decisions(workflow_id)).get(decision_id)
        if earlier is not None:
            return _already_decided(workflow_id, decision_id, choice, earlier)
        _check_open(rec, decision_id, choice)
        answer = {"choice": choice, "comment": comment, "by": caller.name, "at": time.time()}
        recorded, standing = await self.store.record_decision(workflow_id, decision_id, answer)
        if not recorded and standing.get("choice") != choice:
            msg = f"decision {decision_id!r} was taken concurrently: {standing.get('choice')!r}"
            raise ConflictError(msg, earlier_choice=standing.get("choice"))
        # The signed record lists the decisions taken, so a run notices an answer removed from the ledger.
        taken = sorted({*rec.decided, *(await self.store.decisions(workflow_id))})
        await self._update(
            caller,
            workflow_id,
            {"status": Status.QUEUED, "message": "decision received, resuming", "decided": taken},
            "decision.submitted",
            data={"decision_id": decision_id, "choice": choice, "comment": comment},
        )
        await self.store.enqueue(workflow_id, "decision", caller.correlation_id, trace=tracing.carrier())
        await self._audit.record("decision.submitted", caller=caller.name, workflow_id=workflow_id,
                                 decision_id=decision_id, choice=choice)  # fmt: skip
        return DecisionResult(accepted=True, reason="recorded; the workflow resumes", workflow_id=workflow_id,
                              decision_id=decision_id, choice=choice, decided_by=caller.name)  # fmt: skip

    async def list_workflows(
        self,
        caller: Caller,
        *,
        project_id: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> WorkflowList:
        """Workflows the caller may see, newest first, one page at a time."""
        await self._require(caller, "read", "list workflows")
        if project_id is not None and not _PROJECT_RE.match(project_id):
            raise InvalidArgumentError(
                "project_id", "must be 1-100 characters of letters, digits, '_' or '-'"
            )
        if status is not None and status not in _STATUSES:
            raise InvalidArgumentError("status", f"use one of {sorted(_STATUSES)}")
        if not 1 <= limit <= 200:
            raise InvalidArgumentError("limit", "must be between 1 and 200")
        try:
            after = float(cursor) if cursor else None
        except ValueError:
            raise InvalidArgumentError("cursor", "pass the next_cursor of an earlier page") from None
        if project_id is not None:
            projects: list[str] | None = [project_id] if caller.sees(project_id) else []
        else:
            projects = None if "*" in caller.projects else list(caller.projects)
        if projects == []:
            return WorkflowList(workflows=[], next_cursor=None)
        recs, nxt = await self.store.list_workflows(
            project_ids=projects, status=status, cursor=after, limit=limit
        )
        return WorkflowList(
            workflows=[
                WorkflowSummary(
                    workflow_id=r.id,
                    project_id=r.project_id,
                    workflow=r.workflow,
                    status=r.status,
                    percent=r.percent,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                )
                for r in recs
            ],
            next_cursor=repr(nxt) if nxt is not None else None,
        )

    async def pause(self, caller: Caller, workflow_id: str) -> WorkflowStatus:
        """Stop the workflow at its next step boundary, keeping its checkpoint."""
        await self._require(caller, "operate", "pause workflows")
        rec = await self._visible(caller, workflow_id)
        if rec.status in TERMINAL:
            msg = f"workflow {workflow_id!r} is {rec.status}; only unfinished workflows can be paused"
            raise ConflictError(msg)
        if rec.status == Status.PAUSED:
            return _status(rec)
        await self._update(caller, workflow_id, {"control": "pause"}, "workflow.pause_requested")
        if rec.status in {Status.QUEUED, Status.WAITING_DECISION}:
            await self._update(
                caller, workflow_id, {"status": Status.PAUSED, "message": "paused"}, "workflow.paused"
            )
        else:
            await self.store.publish_control(workflow_id, "pause")
        return _status(await self.store.get(workflow_id) or rec)

    async def resume(self, caller: Caller, workflow_id: str) -> WorkflowStatus:
        """Continue a paused workflow from its checkpoint."""
        await self._require(caller, "operate", "resume workflows")
        rec = await self._visible(caller, workflow_id)
        if rec.status != Status.PAUSED and rec.control != "pause":
            msg = f"workflow {workflow_id!r} is {rec.status}, not paused"
            raise ConflictError(msg)
        await self._update(
            caller,
            workflow_id,
            {"control": "", "status": Status.QUEUED, "message": "resuming"},
            "workflow.resumed",
        )
        await self.store.enqueue(workflow_id, "resume", caller.correlation_id, trace=tracing.carrier())
        return _status(await self.store.get(workflow_id) or rec)

    async def cancel(self, caller: Caller, workflow_id: str) -> WorkflowStatus:
        """Stop the workflow for good and mark it cancelled."""
        await self._require(caller, "operate", "cancel workflows")
        rec = await self._visible(caller, workflow_id)
        if rec.status in TERMINAL:
            if rec.status == Status.CANCELLED:
                return _status(rec)
            msg = f"workflow {workflow_id!r} is already {rec.status}"
            raise ConflictError(msg)
        await self._update(caller, workflow_id, {"control": "cancel"}, "workflow.cancel_requested")
        if rec.status in {Status.QUEUED, Status.WAITING_DECISION, Status.PAUSED}:
            await self._update(
                caller,
                workflow_id,
                {"status": Status.CANCELLED, "message": "cancelled", "pending": []},
                "workflow.cancelled",
            )
            tracing.ended(f"production {rec.workflow} ended", rec.trace, rec.created_at, mo_workflow_id=rec.id,
                          mo_project_id=rec.project_id, mo_status=str(Status.CANCELLED))  # fmt: skip
        # Also when the record said queued: a run may have been claimed already and would otherwise
        # write its next status over "cancelled".
        await self.store.publish_control(workflow_id, "cancel")
        if self._cancel_jobs is not None:
            await self._cancel_jobs(workflow_id)
        return _status(await self.store.get(workflow_id) or rec)

    async def retry_step(self, caller: Caller, workflow_id: str) -> WorkflowStatus:
        """Run a failed workflow again from the step that failed (finished steps are kept)."""
        await self._require(caller, "operate", "retry steps")
        rec = await self._visible(caller, workflow_id)
        if rec.status != Status.FAILED:
            msg = f"workflow {workflow_id!r} is {rec.status}; only a failed workflow can retry its step"
            raise ConflictError(msg)
        # In flight again: its project's and the caller's key's max_in_flight apply (it is no new start).
        async with self._reserved(workflow_id, caller, rec.project_id, start=False, action="retried"):
            await self._update(
                caller,
                workflow_id,
                {"status": Status.QUEUED, "message": "retrying the failed step"},
                "workflow.retry",
            )
        await self.store.enqueue(workflow_id, "retry", caller.correlation_id, trace=tracing.carrier())
        return _status(await self.store.get(workflow_id) or rec)

    async def fork(self, caller: Caller, workflow_id: str, checkpoint_id: str) -> StartResult:
        """Start a new workflow from any checkpoint of another (its state at that point, a fresh future).

        Raises:
            NotFoundError: unknown workflow or checkpoint.
        """
        await self._require(caller, "operate", "fork workflows")
        src = await self._visible(caller, workflow_id)
        tup = await self.checkpoints_of.one(workflow_id, checkpoint_id)
        wid = self.store.new_id()
        async with self._reserved(wid, caller, src.project_id, start=True, action="forked"):
            # A fork is a production of its own, linked to the one it came from.
            root = tracing.start(f"production {src.workflow}", links=tracing.link_of(src.trace), mo_workflow_id=wid,
                                 mo_project_id=src.project_id, mo_workflow=src.workflow, mo_forked_from=workflow_id)  # fmt: skip
            rec, _ = await self.store.create(
                project_id=src.project_id, workflow=src.workflow, brief=src.brief, options=src.options,
                created_by=caller.name, correlation_id=caller.correlation_id,
                forked_from=f"{workflow_id}@{checkpoint_id}", enqueue=False, wid=wid, trace=tracing.carrier_of(root),
            )  # fmt: skip
            if root is not None:
                root.end()
            await self.checkpoints_of.copy(tup, rec.id)
            await self._update(caller, rec.id, {}, "workflow.forked",
                               data={"from": workflow_id, "checkpoint_id": checkpoint_id})  # fmt: skip
            await self.store.enqueue(rec.id, "fork", caller.correlation_id, trace=tracing.carrier())
        return StartResult(workflow_id=rec.id, status=Status.QUEUED, project_id=rec.project_id,
                           workflow=rec.workflow, created=True, resources=self.resources(rec.id))  # fmt: skip

    async def checkpoints(self, caller: Caller, workflow_id: str, limit: int = 100) -> CheckpointList:
        """The workflow's checkpoints (root namespace), newest first."""
        await self._require(caller, "read", "read checkpoints")
        await self._visible(caller, workflow_id)
        return CheckpointList(
            workflow_id=workflow_id, checkpoints=await self.checkpoints_of.history(workflow_id, limit)
        )

    async def checkpoint(self, caller: Caller, workflow_id: str, checkpoint_id: str) -> CheckpointDetail:
        """One checkpoint's values and metadata."""
        await self._require(caller, "read", "read checkpoints")
        await self._visible(caller, workflow_id)
        return await self.checkpoints_of.detail(workflow_id, checkpoint_id)

    async def latest_values(self, caller: Caller, workflow_id: str) -> tuple[str, dict[str, Any]] | None:
        """The newest checkpoint's id and state values (deliverables, summary); None before the first step."""
        await self._require(caller, "read", "read checkpoints")
        await self._visible(caller, workflow_id)
        return await self.checkpoints_of.latest(workflow_id)

    async def answers(self, caller: Caller, workflow_id: str) -> dict[str, dict[str, Any]]:
        """The recorded answers of the workflow's decisions, by decision id."""
        await self._require(caller, "read", "read decisions")
        await self._visible(caller, workflow_id)
        return await self.store.decisions(workflow_id)

    async def events(self, caller: Caller, workflow_id: str) -> list[dict[str, Any]]:
        """The workflow's audit log, oldest first."""
        await self._require(caller, "read", "read the audit log")
        await self._visible(caller, workflow_id)
        return await self.store.events(workflow_id)

    async def decisions(self, caller: Caller, workflow_id: str) -> dict[str, Any]:
        """Open decisions and the answers recorded so far."""
        await self._require(caller, "read", "read decisions")
        rec = await self._visible(caller, workflow_id)
        return {
            "workflow_id": workflow_id,
            "pending": _open_decisions(rec),
            "answered": await self.store.decisions(workflow_id),
        }

    def list_agents(self, *, phase: str | None = None, capability: str | None = None) -> AgentList:
        """Agents of the registry, optionally of one phase or with one capability."""
        phases = {"story", "character", "visual", "audio", "scene", "post", "final"}
        if phase is not None and phase not in phases:
            raise InvalidArgumentError("phase", f"use one of {sorted(phases)}")
        states = self._health()
        return AgentList(agents=[
            AgentInfo(id=a.id, name=a.name, phase=a.phase, capabilities=a.capabilities,
                      operation=f"{a.operation.kind}:{a.operation.name}", alternatives=a.alternatives,
                      available=states.get(a.operation.service, "closed") != "open")
            for a in registry().find(phase=phase, capability=capability)
        ])  # fmt: skip

    async def quota_usage(self, caller: Caller, projects: list[str]) -> list[dict[str, Any]]:
        """What the projects (those the caller sees) and the caller's key use of their quotas: in flight and starts
        in the last minute, each with its limit (0: none)."""
        await self._require(caller, "read", "read quotas")
        seen = sorted({p for p in projects if caller.sees(p)})
        if self.quotas is None:
            return []
        keys = [caller.quota_key] if caller.quota_key else []
        out = []
        for use in await self.quotas.usage(seen, keys):
            limits = self.quota_policy.tenancy(caller, use.tenant if use.scope == "project" else "")
            lim = limits.project_limits if use.scope == "project" else limits.key_limits
            out.append({"scope": use.scope, "tenant": use.tenant, "in_flight": use.in_flight,
                        "max_in_flight": lim.max_in_flight, "starts_last_minute": use.starts_last_minute,
                        "starts_per_minute": lim.starts_per_minute})  # fmt: skip
        return out

    async def security_audit(self, caller: Caller, count: int = 1000) -> list[dict[str, Any]]:
        """The deployment's security events, newest last (admin keys only)."""
        await self._require(caller, "admin", "read the security audit log")
        return await self._audit.read(count)
