"""One run of a workflow: bring it as far as it can go now, and end it in exactly one of the known ways.

A run takes the workflow's lease, counts itself among the workflow's attempts, verifies the workflow's
signed state against the mark its record keeps, then drives the graph: start it, continue it after a
crash, or resume it with the decisions recorded since it stopped. It ends completed, waiting for a
decision, paused, cancelled, failed (a step's error, a budget, tampered state, quarantine) or handed back
(shutdown); when Redis goes away it ends without writing and its queue entry is reclaimed later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Command, StateSnapshot
from opentelemetry.trace import SpanKind

from adapters import (
    TERMINAL,
    BudgetExceededError,
    CpuGate,
    IntegrityError,
    OutsideError,
    RedisCheckpointSaver,
    RunTicket,
    RunTurn,
    SecurityAudit,
    Status,
    StoreEvent,
    StoreUnavailableError,
    WorkflowRecord,
    WorkflowStore,
    tracing,
)
from graphs import WORKFLOWS, Ports
from server.engine._anchor import check_answers, check_mark, mark_of
from server.engine._attempts import Attempt, RunAttempts, quarantine_reason
from server.engine._status_writer import StatusWriter
from server.telemetry import Metrics

__all__ = ["RunDeps", "WorkflowRun", "failure_report", "pending_decisions"]

log = structlog.get_logger(__name__)

_SETTLED = {"pause": Status.PAUSED, "cancel": Status.CANCELLED}
_NEXT_AFTER_FAILURE = "the workflow stopped as failed; retry_step runs the failed step again"


def failure_report(exc: Exception, failed_step: str = "") -> tuple[str, dict[str, str]]:
    """A failed run's `last_error` and its event's data: for an outside service's failure, the service, the
    operation, the step, the service's own reason and what happens next."""
    text = f"{type(exc).__name__}: {exc}"
    data = {"error": text[:500]}
    if isinstance(exc, OutsideError):
        step = exc.step or failed_step
        data |= {"service": exc.service, "operation": exc.operation, "step": step, "reason": exc.reason[:500],
                 "next": _NEXT_AFTER_FAILURE}  # fmt: skip
        if step and step not in text:
            text += f" (at step {step!r})"
        if "retry_step" not in text:
            text += f"; next: {_NEXT_AFTER_FAILURE}"
    return text[:2000], {k: v for k, v in data.items() if v}


def pending_decisions(state: StateSnapshot) -> list[dict[str, Any]]:
    """The open interrupts of a snapshot as decisions a caller can answer."""
    out = []
    for intr in state.interrupts:
        value = intr.value if isinstance(intr.value, dict) else {"question": str(intr.value)}
        out.append(
            {
                "id": intr.id,
                "question": str(value.get("question", "")),
                "options": list(value.get("options", [])),
                "kind": str(value.get("kind", "choice")),
                "deadline": value.get("deadline"),
                "context": value.get("context", {}),
            }
        )
    return out


@dataclass(frozen=True)
class RunDeps:
    """What every run of one engine uses."""

    store: WorkflowStore
    saver: RedisCheckpointSaver
    make_ports: Callable[[WorkflowRecord], Ports]
    graph: Callable[[str], Any]
    attempts: RunAttempts
    gate: CpuGate
    metrics: Metrics
    audit: SecurityAudit | None
    consumer: str
    lease_ms: int
    durability: str
    max_attempts: int
    stopping: asyncio.Event
    halted: asyncio.Event
    background: Callable[[Coroutine[Any, Any, Any]], object]
    stats: dict[str, int]


class WorkflowRun:
    """One run of one workflow (one queue entry).

    Args:
        deps: the engine's parts.
        ticket: the queue entry this run answers.
        control: how the engine asks the run to stop at the next step boundary (pause, shutdown).
    """

    def __init__(self, deps: RunDeps, ticket: RunTicket, control: RunControl) -> None:
        self.deps = deps
        self.ticket = ticket
        self.wid = ticket.workflow_id
        self.control = control
        self.rec: WorkflowRecord | None = None
        self.trace: dict[str, str] = {}  # the W3C context of this run's span
        self.failed_step = ""  # the graph step whose error ended the stream, if one did

    async def execute(self) -> None:
        """Run, and end in exactly one known way; the queue entry is acknowledged unless left for later."""
        structlog.contextvars.bind_contextvars(
            workflow_id=self.wid, run_id=self.ticket.entry_id, correlation_id=self.ticket.correlation_id
        )
        # handed_back: give the run to any instance at once; leave_pending: keep the entry for a later reclaim.
        ending = {"handed_back": False, "leave_pending": False, "attempting": False}
        try:
            await self._claimed(ending)
        except asyncio.CancelledError:
            if self.deps.halted.is_set():  # as if the process were killed: nothing more is written
                raise
            rec = await self.deps.store.get(self.wid)
            if rec is not None and rec.control == "cancel":
                await self._apply_control(rec)
            elif self.deps.stopping.is_set():
                ending["handed_back"] = True
            else:
                raise
        except StoreUnavailableError as exc:
            # Redis is away: nothing of the run can be trusted to be written, the workflow has not failed.
            # Leave the queue entry unacknowledged; it is reclaimed (here or elsewhere) once Redis is back.
            ending["leave_pending"] = True
            log.warning("engine.run_lost_redis", error=str(exc)[:200])
        except IntegrityError as exc:
            await self._integrity_failed(exc)
        except BudgetExceededError as exc:
            await self._budget_exceeded(exc)
        except Exception as exc:
            log.exception("engine.run_failed")
            await self._failed(exc)
        finally:
            await self._release(ending)

    async def _claimed(self, ending: dict[str, bool]) -> None:
        deps, wid = self.deps, self.wid
        rec = await self._record()
        if rec is None or rec.status in TERMINAL:
            return
        if not await deps.store.take_lease(wid, deps.consumer, deps.lease_ms):
            # Another live instance runs it. Keep this entry unacknowledged: if that run ends before
            # seeing what this entry asks for, the entry is reclaimed after the lease and run then.
            log.info("engine.run_held_elsewhere")
            ending["leave_pending"] = True
            return
        self.rec = rec
        if rec.control in _SETTLED:
            await self._apply_control(rec)
            return
        # Every run of a production is a child of its root span, linked to the request that queued it.
        with tracing.span(
            f"run {rec.workflow}", kind=SpanKind.CONSUMER, parent=tracing.context_of(rec.trace),
            links=tracing.link_of(self.ticket.trace),
            attributes={"mo.workflow_id": wid, "mo.project_id": rec.project_id, "mo.run.reason": self.ticket.reason,
                        "mo.instance": deps.consumer},
        ) as run_span:  # fmt: skip
            self.trace = tracing.carrier()
            # Counted before it runs, forgotten when it ends with this process alive (`_release`): what is left
            # are the runs that ended their worker.
            attempts = await deps.attempts.begin(wid, deps.consumer, rec.step)
            ending["attempting"] = True
            if run_span is not None:
                run_span.set_attribute("mo.run.attempt", len(attempts))
            if len(attempts) > deps.max_attempts:
                await self._quarantine(rec, attempts[:-1])
                return
            log.info("engine.run_claimed", reason=self.ticket.reason, attempt=len(attempts))
            # A turn of the CPU gate while it computes: projects in turn, oldest workflow first within one
            # (given back while it waits outside).
            async with RunTurn(deps.gate, rec.created_at, rec.project_id).running():
                ending["handed_back"] = await self._drive(rec)

    async def _release(self, ending: dict[str, bool]) -> None:
        deps = self.deps
        if deps.halted.is_set():
            return
        if ending["attempting"]:
            with contextlib.suppress(Exception):
                await deps.attempts.clear(self.wid)
        with contextlib.suppress(Exception):
            if ending["handed_back"]:
                # Give the run to any instance right away instead of waiting for the lease.
                await deps.store.hand_back(self.ticket, deps.consumer, trace=self.trace)
            elif not ending["leave_pending"]:
                await deps.store.finish(self.ticket, deps.consumer)
        structlog.contextvars.unbind_contextvars("workflow_id", "run_id", "correlation_id")

    async def _record(self) -> WorkflowRecord | None:
        """The record of a queued workflow; a missing one is tampering when the workflow has checkpoints.

        Raises:
            IntegrityError: the record fails its signature, or was removed while its checkpoints remain.
        """
        rec = await self.deps.store.get(self.wid)
        if rec is None and await self.deps.saver.has_thread(self.wid):
            msg = f"workflow {self.wid!r} has checkpoints but no record: the record was removed"
            raise IntegrityError(msg)
        return rec

    # -- driving the graph --------------------------------------------------------------------

    async def _drive(self, rec: WorkflowRecord) -> bool:
        """Run until the workflow completes, waits for a human, fails or is drained.

        Returns:
            True when the run was drained for shutdown (to be handed back), else False.
        """
        graph = self.deps.graph(rec.workflow)
        config: Any = {"configurable": {"thread_id": self.wid}, "recursion_limit": 1000}
        ports = self.deps.make_ports(rec)
        await check_mark(self.deps.saver, self.deps.store, rec)
        while True:
            state = await graph.aget_state(config)
            graph_input: Any
            if state.created_at is None:
                graph_input = WORKFLOWS[rec.workflow].initial_input(rec.project_id, rec.brief)
            elif state.interrupts:
                resume = check_answers(rec, state.interrupts, await self.deps.store.decisions(self.wid))
                if not resume:
                    if await self._park_for_decisions(state):
                        continue
                    return False
                graph_input = Command(resume=resume)
            elif state.next:
                graph_input = None
            else:
                await self._completed(state)
                return False
            await self._set({"status": Status.RUNNING, "pending": [], "last_error": "", "waiting_reason": "",
                             "message": "running"},
                            event="run.started" if graph_input is not None else "run.resumed")  # fmt: skip
            try:
                await self._stream(graph, graph_input, config=config, ports=ports)
            except GraphDrained as drained:
                if drained.reason == "pause":
                    await self._set({"status": Status.PAUSED, "agents_running": [], "message": "paused",
                                     "mark": await self._mark()}, event="workflow.paused")  # fmt: skip
                    return False
                log.info("engine.run_drained", reason=drained.reason)
                return True

    async def _park_for_decisions(self, state: StateSnapshot) -> bool:
        """Wait for a human: write the open decisions. True when an answer arrived meanwhile (go on)."""
        pending = pending_decisions(state)
        await self._set(
            {"status": Status.WAITING_DECISION, "pending": pending, "agents_running": [],
             "message": pending[0]["question"] if pending else "waiting for a decision", "mark": await self._mark()},
            event="decision.requested", event_data={"decisions": [p["id"] for p in pending]},
        )  # fmt: skip
        # A decision recorded while we were writing the status would otherwise wait for the next run.
        answers = await self.deps.store.decisions(self.wid)
        if any(i.id in answers for i in state.interrupts):
            return True
        # A pause or cancel that landed while we wrote may have had its status overwritten by ours (it
        # writes control first, then status): read once more and let it win.
        now = await self.deps.store.get(self.wid)
        if now is not None and now.control in _SETTLED and now.status != _SETTLED[now.control]:
            await self._apply_control(now)
        return False

    async def _completed(self, state: StateSnapshot) -> None:
        summary = json.loads(json.dumps(state.values.get("summary", {}), default=str))
        await self._set({"status": Status.COMPLETED, "percent": 100, "pending": [], "agents_running": [],
                         "message": "completed", "result": summary, "mark": await self._mark()},
                        event="workflow.completed")  # fmt: skip

    async def _mark(self) -> str:
        return await mark_of(self.deps.saver, self.deps.store, self.wid)

    async def _stream(self, graph: Any, graph_input: Any, *, config: Any, ports: Ports) -> None:
        """Stream the graph's steps, writing their status in the background, under the step clock."""
        steps = _Steps(self.deps, self.wid, ports)
        stream = graph.astream(
            graph_input, config, context=ports, stream_mode=["custom", "tasks"], durability=self.deps.durability,
            control=self.control,
        )  # fmt: skip
        try:
            # The step clock: expires when the oldest running step has run for the budget's seconds.
            async with contextlib.aclosing(stream), asyncio.timeout(None) as clock:
                async for mode, chunk in stream:
                    if isinstance(chunk, dict):
                        steps.seen(mode, chunk)
                        if mode == "tasks":
                            clock.reschedule(steps.deadline())
        except TimeoutError as exc:
            if steps.oldest() is None or not clock.expired():
                raise
            with contextlib.suppress(Exception):
                await steps.writer.drain()
            raise steps.over_time() from exc
        except asyncio.CancelledError:
            steps.writer.cancel()
            raise
        except BaseException:
            self.failed_step = steps.failed_step
            with contextlib.suppress(Exception):  # the run's own error is the one to report
                await steps.writer.drain()
            raise
        await steps.writer.drain()

    # -- ends ---------------------------------------------------------------------------------

    async def _set(self, fields: dict[str, Any], event: str, **kw: Any) -> None:
        if "status" in fields:
            self.deps.metrics.workflow_events.labels(fields["status"]).inc()
        await self.deps.store.update(self.wid, fields, event=event, **kw)
        if fields.get("status") in TERMINAL and self.rec is not None:
            rec = self.rec
            tracing.ended(f"production {rec.workflow} ended", rec.trace, rec.created_at, mo_workflow_id=rec.id,
                          mo_project_id=rec.project_id, mo_status=str(fields["status"]))  # fmt: skip

    async def _audit(self, what: str, **data: Any) -> None:
        if self.deps.audit is not None:
            with contextlib.suppress(Exception):
                await self.deps.audit.record(what, **data)

    async def _apply_control(self, rec: WorkflowRecord) -> None:
        if rec.control == "pause":
            await self._set({"status": Status.PAUSED, "agents_running": [], "message": "paused"},
                            event="workflow.paused")  # fmt: skip
        elif rec.control == "cancel":
            await self._set({"status": Status.CANCELLED, "agents_running": [], "message": "cancelled"},
                            event="workflow.cancelled")  # fmt: skip

    async def _quarantine(self, rec: WorkflowRecord, earlier: list[Attempt]) -> None:
        """A run that ended its worker too many times is not run again: the workflow fails, says why, and
        the security audit records it (a poison input is also how someone would take instances down)."""
        reason = quarantine_reason(earlier, self.deps.max_attempts)
        instances = sorted({a.instance for a in earlier})
        self.deps.stats["quarantined"] += 1
        self.deps.metrics.runs_quarantined.inc()
        log.error("engine.run_quarantined", attempts=len(earlier), instances=instances, step=rec.step)
        await self._audit("run.quarantined", workflow_id=rec.id, project_id=rec.project_id,
                          attempts=len(earlier), instances=instances, step=rec.step)  # fmt: skip
        await self._set({"status": Status.FAILED, "last_error": reason, "agents_running": [], "message": "quarantined"},
                        event="workflow.quarantined", correlation_id=self.ticket.correlation_id,
                        event_data={"reason": reason, "attempts": len(earlier), "instances": instances,
                                    "step": rec.step})  # fmt: skip

    async def _integrity_failed(self, exc: IntegrityError) -> None:
        """Tampered data is never used: the run stops, says why, and the security audit records it."""
        log.error("engine.integrity_failure", exc_info=exc)
        await self._audit("integrity.failed", workflow_id=self.wid, error=str(exc))
        with contextlib.suppress(Exception):
            await self._set({"status": Status.FAILED, "last_error": f"integrity_error: {exc}", "agents_running": []},
                            event="integrity.failed", correlation_id=self.ticket.correlation_id,
                            event_data={"error": str(exc)})  # fmt: skip

    async def _budget_exceeded(self, exc: BudgetExceededError) -> None:
        """A budget reached stops the workflow as failed; retry_step continues it once the budget is raised."""
        log.warning(
            "engine.budget_exceeded", budget=exc.budget, limit=exc.limit, reached=exc.reached, step=exc.where
        )
        await self._set({"status": Status.FAILED, "last_error": f"budget_exceeded: {exc}", "agents_running": [],
                         "message": f"stopped: budget {exc.budget} exceeded"},
                        event="workflow.budget_exceeded", correlation_id=self.ticket.correlation_id,
                        event_data={"budget": exc.budget, "limit": exc.limit, "reached": exc.reached,
                                    "step": exc.where})  # fmt: skip

    async def _failed(self, exc: Exception) -> None:
        last_error, data = failure_report(exc, self.failed_step)
        await self._set({"status": Status.FAILED, "last_error": last_error, "agents_running": []},
                        event="workflow.failed", correlation_id=self.ticket.correlation_id, event_data=data)  # fmt: skip


class _Steps:
    """What a run's stream has seen of its steps: which run, since when, the workflow's percent; and the
    status writes that follow from it."""

    def __init__(self, deps: RunDeps, wid: str, ports: Ports) -> None:
        self._deps = deps
        self._wid = wid
        self._ports = ports
        self.writer = StatusWriter(deps.store, wid)
        self._running: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._best = 0.0
        self._progressed = False
        self.failed_step = ""

    def seen(self, mode: str, chunk: dict[str, Any]) -> None:
        """One chunk of the stream: a node's progress ("custom") or a task starting or ending ("tasks")."""
        if mode == "custom":
            fields: dict[str, Any] = {k: chunk[k] for k in ("phase", "step", "message") if k in chunk}
            # Parallel branches report their own percent; the workflow's never goes back.
            self._best = max(self._best, float(chunk.get("percent", 0)))
            fields["percent"] = self._best
            fields["waiting_reason"] = ""
            self.writer.add(fields)
        elif mode == "tasks":
            event = self._ended(chunk) if "result" in chunk or "error" in chunk else self._began(chunk)
            self.writer.add({"agents_running": sorted(set(self._running.values()))}, event)

    def _began(self, chunk: dict[str, Any]) -> StoreEvent:
        self._running[chunk["id"]] = chunk["name"]
        self._started[chunk["id"]] = time.monotonic()
        self._ports.budget.check_width(len(self._running), where=chunk["name"])
        return StoreEvent("step.started", {"step": chunk["name"]})

    def _ended(self, chunk: dict[str, Any]) -> StoreEvent:
        self._running.pop(chunk["id"], None)
        t0 = self._started.pop(chunk["id"], None)
        if t0 is not None:
            self._deps.metrics.step_seconds.labels(chunk["name"]).observe(time.monotonic() - t0)
        if not self._progressed and not chunk.get("error"):
            # A step finished: the runs before this one were not stuck here (not poison).
            self._progressed = True
            self._deps.background(self._deps.attempts.progressed(self._wid))
        if chunk.get("error"):
            self.failed_step = chunk["name"]
        event = "step.failed" if chunk.get("error") else "step.finished"
        return StoreEvent(event, {"step": chunk["name"], "error": str(chunk.get("error") or "")[:500]})

    def oldest(self) -> str | None:
        """The task that has run longest, if any runs."""
        return min(self._started, key=self._started.__getitem__, default=None)

    def deadline(self) -> float | None:
        """When the oldest running step reaches the step budget (loop time), or None when no step runs."""
        seconds = self._ports.budget.limits.step_seconds
        if not self._started or seconds == float("inf"):
            return None
        return asyncio.get_running_loop().time() + (min(self._started.values()) + seconds - time.monotonic())

    def over_time(self) -> BudgetExceededError:
        """The error of a step that ran past the step budget."""
        oldest = self.oldest()
        assert oldest is not None
        ran = time.monotonic() - self._started[oldest]
        limit = self._ports.budget.limits.step_seconds
        return BudgetExceededError("step_seconds", limit, round(ran, 1), self._running[oldest])
