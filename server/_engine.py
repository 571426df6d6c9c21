"""The run engine: workers claim runs from the Redis Stream, hold leases, execute graphs.

A run is "bring this workflow as far as it can go now": start it, continue it after a crash, or
resume it with the decisions recorded since it stopped. Runs survive any one process: a run whose
holder stops renewing its claim is taken over (XAUTOCLAIM) and resumes from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Command, StateSnapshot
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import (
    TERMINAL,
    IntegrityError,
    RedisCheckpointSaver,
    RunTicket,
    StoreEvent,
    WorkflowRecord,
    WorkflowStore,
)
from adapters._cpu_gate import CpuGate, RunTurn
from graphs import WORKFLOWS, BudgetExceededError, Ports
from server._anchor import check_answers, check_mark, has_checkpoints, mark_of
from server._guard import MemoryMark, RunAttempts, quarantine_reason
from server._metrics import Metrics

__all__ = ["Engine"]

log = structlog.get_logger(__name__)

# How long a run's step status may wait to be merged with the next steps' before it is written.
_STATUS_LINGER = 0.02


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


class Engine:
    """Worker pool of one instance.

    Args:
        store: workflow records and the run queue.
        saver: the checkpointer every graph uses.
        make_ports: builds the ports of a run from its workflow record.
        consumer: this instance's name in the consumer group and in leases.
        concurrency: most runs this instance executes at once (waiting costs no thread).
        lease_seconds: how long a silent holder keeps a run before others may take it.
        durability: LangGraph durability for runs ("sync" waits for each checkpoint).
        max_attempts: runs of one workflow that may end their worker (process death, hang) in a row before
            the workflow is quarantined.
        memory: the high-water mark above which no new run is claimed (None: no mark).
    """

    def __init__(
        self,
        store: WorkflowStore,
        saver: RedisCheckpointSaver,
        make_ports: Callable[[WorkflowRecord], Ports],
        *,
        consumer: str,
        concurrency: int = 1000,
        lease_seconds: float = 30.0,
        durability: str = "sync",
        metrics: Metrics | None = None,
        audit: Callable[..., Awaitable[None]] | None = None,
        max_attempts: int = 3,
        memory: MemoryMark | None = None,
        cpu_turns: int = 1000,
    ) -> None:
        self.store = store
        self.gate = CpuGate(cpu_turns)
        self.saver = saver
        self.make_ports = make_ports
        self.consumer = consumer
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.durability = durability
        self.metrics = metrics or Metrics()
        self._audit = audit
        self._graphs: dict[str, Any] = {}
        self._running: dict[str, tuple[RunTicket, asyncio.Task[None], RunControl]] = {}
        self._deferred: dict[str, RunTicket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._slot = asyncio.Event()
        self.stats = {"runs_started": 0, "runs_finished": 0, "reclaimed": 0, "quarantined": 0}
        self.max_attempts = max_attempts
        self.attempts = RunAttempts(store)
        self.memory = memory
        # Why this instance claims no new runs now ("" while it claims); /readyz shows it.
        self.not_claiming = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def graph(self, name: str) -> Any:
        """The compiled graph of a workflow (compiled once per process)."""
        if name not in self._graphs:
            self._graphs[name] = WORKFLOWS[name].build().compile(checkpointer=self.saver)
        return self._graphs[name]

    async def start(self) -> None:
        """Create the consumer group and start claiming runs and renewing leases."""
        await self.store.ensure_group()
        for coro in (self._claim_loop(), self._heartbeat_loop()):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        log.info("engine.started", consumer=self.consumer, concurrency=self.concurrency)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; drain running runs at their next step boundary, hand back the rest."""
        self._stopping.set()
        for _, _, control in self._running.values():
            control.request_drain("shutdown")
        running = [t for _, t, _ in self._running.values()]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("engine.stopped", consumer=self.consumer)

    def control(self, wid: str, what: str) -> bool:
        """Apply pause/cancel to a run this instance holds; False if it holds none."""
        held = self._running.get(wid)
        if held is None:
            return False
        _, task, control = held
        if what == "pause":
            control.request_drain("pause")
        elif what == "cancel":
            task.cancel()
        return True

    def held(self) -> list[RunTicket]:
        """The queue entries this instance holds (safe to call from another thread: retried if the loop
        changes them meanwhile)."""
        for _ in range(10):
            try:
                return [t for t, _, _ in list(self._running.values())] + list(self._deferred.values())
            except RuntimeError:  # changed size during iteration
                continue
        return []

    @property
    def running(self) -> list[str]:
        """Workflow ids this instance is executing."""
        return list(self._running)

    # -- loops --------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        last_reclaim = 0.0
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            if self._over_memory():
                # Runs held here go on (they may free memory as they end); nothing new is taken on.
                self._slot.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot.wait(), 1.0)
                continue
            try:
                tickets: list[RunTicket] = []
                if time.monotonic() - last_reclaim > self.lease_ms / 4000:
                    last_reclaim = time.monotonic()
                    reclaimed = await self.store.reclaim(self.consumer, self.lease_ms, min(free, 100))
                    reclaimed = [t for t in reclaimed if t.workflow_id not in self._running]
                    if reclaimed:
                        self.stats["reclaimed"] += len(reclaimed)
                        self.metrics.lease_reclaims.inc(len(reclaimed))
                        log.warning("engine.runs_reclaimed", count=len(reclaimed))
                    tickets += reclaimed
                tickets += await self.store.claim(self.consumer, min(free - len(tickets), 100) or 1, 200)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine.claim_failed")
                await asyncio.sleep(1.0)
                continue
            for ticket in tickets:
                self._spawn(ticket)

    def _over_memory(self) -> bool:
        """Whether the memory mark stops claiming now; logs and sets the gauge on each change."""
        over = self.memory is not None and self.memory.above()
        if over and not self.not_claiming:
            assert self.memory is not None
            self.not_claiming = self.memory.describe()
            log.warning("engine.claiming_stopped", reason=self.not_claiming, rss=self.memory.rss,
                        mark=self.memory.mark_bytes, running=len(self._running))  # fmt: skip
        elif not over and self.not_claiming:
            self.not_claiming = ""
            log.info("engine.claiming_resumed", rss=self.memory.rss if self.memory else 0)
        self.metrics.claiming.set(0 if over else 1)
        if self.memory is not None:
            self.metrics.rss_bytes.set(self.memory.rss)
        return over

    def _spawn(self, ticket: RunTicket) -> None:
        wid = ticket.workflow_id
        if wid in self._running:
            # One run per workflow at a time. The run in progress may end before seeing what this entry
            # asks for (a retry, a decision), so run again when it ends; a second duplicate is redundant.
            earlier = self._deferred.get(wid)
            self._deferred[wid] = ticket
            if earlier is not None:
                self._background(self.store.finish(earlier, self.consumer))
            return
        control = RunControl()
        task = asyncio.create_task(self._run(ticket, control))
        self._running[wid] = (ticket, task, control)
        self.stats["runs_started"] += 1
        self.metrics.runs_active.set(len(self._running))

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(wid, None)
            self.stats["runs_finished"] += 1
            self.metrics.runs_active.set(len(self._running))
            self._slot.set()
            deferred = self._deferred.pop(wid, None)
            if deferred is not None and not self._stopping.is_set():
                self._spawn(deferred)

        task.add_done_callback(done)

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.store.renew(
                    self.consumer, [t for t, _, _ in self._running.values()], self.lease_ms
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine.heartbeat_failed")

    # -- one run ------------------------------------------------------------------------------

    async def _run(self, ticket: RunTicket, control: RunControl) -> None:  # noqa: PLR0912 - every way a run ends, in one place
        wid = ticket.workflow_id
        structlog.contextvars.bind_contextvars(
            workflow_id=wid, run_id=ticket.entry_id, correlation_id=ticket.correlation_id
        )
        handed_back = False
        leave_pending = False  # True: leave the queue entry unacknowledged for a later reclaim
        attempting = False  # True once this run is counted in the workflow's attempts
        try:
            rec = await self._record(wid)
            if rec is None or rec.status in TERMINAL:
                return
            if not await self.store.take_lease(wid, self.consumer, self.lease_ms):
                # Another live instance runs it. Keep this entry unacknowledged: if that run ends before
                # seeing what this entry asks for, the entry is reclaimed after the lease and run then.
                log.info("engine.run_held_elsewhere")
                leave_pending = True
                return
            if rec.control in {"pause", "cancel"}:
                await self._apply_control(rec)
                return
            # Counted before it runs, forgotten when it ends with this process alive (finally, below):
            # what is left are the runs that ended their worker.
            attempts = await self.attempts.begin(wid, self.consumer, rec.step)
            attempting = True
            if len(attempts) > self.max_attempts:
                await self._quarantine(rec, ticket, attempts[:-1])
                return
            log.info("engine.run_claimed", reason=ticket.reason, attempt=len(attempts))
            # A turn of the CPU gate while it computes, oldest workflow first (given back while it waits outside).
            async with RunTurn(self.gate, rec.created_at).running():
                handed_back = await self._drive(rec, control)
        except asyncio.CancelledError:
            rec = await self.store.get(wid)
            if rec is not None and rec.control == "cancel":
                await self._apply_control(rec)
            elif self._stopping.is_set():
                handed_back = True
            else:
                raise
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError) as exc:
            # Redis is away: nothing of the run can be trusted to be written, the workflow has not failed.
            # Leave the queue entry unacknowledged; it is reclaimed (here or elsewhere) once Redis is back.
            leave_pending = True
            log.warning("engine.run_lost_redis", error=str(exc)[:200])
        except IntegrityError as exc:
            await self._integrity_failed(wid, ticket, exc)
        except BudgetExceededError as exc:
            await self._budget_exceeded(wid, ticket, exc)
        except Exception as exc:
            log.exception("engine.run_failed")
            await self._set(
                wid,
                {
                    "status": "failed",
                    "last_error": f"{type(exc).__name__}: {exc}"[:2000],
                    "agents_running": [],
                },
                event="workflow.failed",
                correlation_id=ticket.correlation_id,
                event_data={"error": f"{type(exc).__name__}: {exc}"[:500]},
            )
        finally:
            if attempting:
                with contextlib.suppress(Exception):
                    await self.attempts.clear(wid)
            with contextlib.suppress(Exception):
                if handed_back:
                    # Give the run to any instance right away instead of waiting for the lease.
                    await self.store.enqueue(wid, "handed_back", ticket.correlation_id)
                if not leave_pending:
                    await self.store.finish(ticket, self.consumer)
            structlog.contextvars.unbind_contextvars("workflow_id", "run_id", "correlation_id")

    async def _quarantine(self, rec: WorkflowRecord, ticket: RunTicket, earlier: list[Any]) -> None:
        """A run that ended its worker too many times is not run again: the workflow fails, says why, and
        the security audit records it (a poison input is also how someone would take instances down)."""
        reason = quarantine_reason(earlier, self.max_attempts)
        instances = sorted({a.instance for a in earlier})
        self.stats["quarantined"] += 1
        self.metrics.runs_quarantined.inc()
        log.error("engine.run_quarantined", attempts=len(earlier), instances=instances, step=rec.step)
        if self._audit is not None:
            with contextlib.suppress(Exception):
                await self._audit("run.quarantined", workflow_id=rec.id, project_id=rec.project_id,
                                  attempts=len(earlier), instances=instances, step=rec.step)  # fmt: skip
        await self._set(rec.id, {"status": "failed", "last_error": reason, "agents_running": [],
                                 "message": "quarantined"},
                        event="workflow.quarantined", correlation_id=ticket.correlation_id,
                        event_data={"reason": reason, "attempts": len(earlier), "instances": instances,
                                    "step": rec.step})  # fmt: skip

    async def _record(self, wid: str) -> WorkflowRecord | None:
        """The record of a queued workflow; a missing one is tampering when the workflow has checkpoints.

        Raises:
            IntegrityError: the record fails its signature, or was removed while its checkpoints remain.
        """
        rec = await self.store.get(wid)
        if rec is None and await has_checkpoints(self.saver, wid):
            msg = f"workflow {wid!r} has checkpoints but no record: the record was removed"
            raise IntegrityError(msg)
        return rec

    async def _integrity_failed(self, wid: str, ticket: RunTicket, exc: IntegrityError) -> None:
        """Tampered data is never used: the run stops, says why, and the security audit records it."""
        log.error("engine.integrity_failure", exc_info=exc)
        if self._audit is not None:
            with contextlib.suppress(Exception):
                await self._audit("integrity.failed", workflow_id=wid, error=str(exc))
        with contextlib.suppress(Exception):
            await self._set(wid, {"status": "failed", "last_error": f"integrity_error: {exc}", "agents_running": []},
                            event="integrity.failed", correlation_id=ticket.correlation_id,
                            event_data={"error": str(exc)})  # fmt: skip

    async def _budget_exceeded(self, wid: str, ticket: RunTicket, exc: BudgetExceededError) -> None:
        """A budget reached stops the workflow as failed; retry_step continues it once the budget is raised."""
        log.warning(
            "engine.budget_exceeded", budget=exc.budget, limit=exc.limit, reached=exc.reached, step=exc.where
        )
        await self._set(wid, {"status": "failed", "last_error": f"budget_exceeded: {exc}", "agents_running": [],
                              "message": f"stopped: budget {exc.budget} exceeded"},
                        event="workflow.budget_exceeded", correlation_id=ticket.correlation_id,
                        event_data={"budget": exc.budget, "limit": exc.limit, "reached": exc.reached,
                                    "step": exc.where})  # fmt: skip

    async def _set(self, wid: str, fields: dict[str, Any], event: str, **kw: Any) -> None:
        if "status" in fields:
            self.metrics.workflow_events.labels(fields["status"]).inc()
        await self.store.update(wid, fields, event=event, **kw)

    async def _apply_control(self, rec: WorkflowRecord) -> None:
        if rec.control == "pause":
            await self._set(
                rec.id,
                {"status": "paused", "agents_running": [], "message": "paused"},
                event="workflow.paused",
            )
        elif rec.control == "cancel":
            await self._set(
                rec.id,
                {"status": "cancelled", "agents_running": [], "message": "cancelled"},
                event="workflow.cancelled",
            )

    async def _drive(self, rec: WorkflowRecord, control: RunControl) -> bool:
        """Run until the workflow completes, waits for a human, fails or is drained.

        Returns:
            True when the run was drained for shutdown (to be handed back), else False.
        """
        wid = rec.id
        graph = self.graph(rec.workflow)
        config: Any = {"configurable": {"thread_id": wid}, "recursion_limit": 1000}
        ports = self.make_ports(rec)
        spec = WORKFLOWS[rec.workflow]
        await check_mark(self.saver, self.store, rec)
        while True:
            state = await graph.aget_state(config)
            graph_input: Any
            if state.created_at is None:
                graph_input = spec.initial_input(rec.project_id, rec.brief, rec.options)
            elif state.interrupts:
                answers = await self.store.decisions(wid)
                resume = check_answers(rec, state.interrupts, answers)
                if not resume:
                    pending = pending_decisions(state)
                    await self._set(
                        wid,
                        {
                            "status": "waiting_decision",
                            "pending": pending,
                            "agents_running": [],
                            "message": pending[0]["question"] if pending else "waiting for a decision",
                            "mark": await mark_of(self.saver, self.store, wid),
                        },
                        event="decision.requested",
                        event_data={"decisions": [p["id"] for p in pending]},
                    )
                    # A decision recorded while we were writing the status would otherwise wait for
                    # the next run; look once more.
                    answers = await self.store.decisions(wid)
                    if any(i.id in answers for i in state.interrupts):
                        continue
                    # A pause or cancel that landed while we wrote may have had its status overwritten by
                    # ours (it writes control first, then status): read once more and let it win.
                    now = await self.store.get(wid)
                    settled = {"pause": "paused", "cancel": "cancelled"}
                    if now is not None and now.control in settled and now.status != settled[now.control]:
                        await self._apply_control(now)
                    return False
                graph_input = Command(resume=resume)
            elif state.next:
                graph_input = None
            else:
                await self._set(
                    wid,
                    {
                        "status": "completed",
                        "percent": 100,
                        "pending": [],
                        "agents_running": [],
                        "message": "completed",
                        "result": _jsonable(state.values.get("summary", {})),
                        "mark": await mark_of(self.saver, self.store, wid),
                    },
                    event="workflow.completed",
                )
                return False
            await self._set(
                wid,
                {
                    "status": "running",
                    "pending": [],
                    "last_error": "",
                    "waiting_reason": "",
                    "message": "running",
                },
                event="run.started" if graph_input is not None else "run.resumed",
            )
            try:
                await self._stream(wid, graph, graph_input, config=config, ports=ports, control=control)
            except GraphDrained as drained:
                if drained.reason == "pause":
                    await self._set(
                        wid,
                        {"status": "paused", "agents_running": [], "message": "paused",
                         "mark": await mark_of(self.saver, self.store, wid)},
                        event="workflow.paused",
                    )  # fmt: skip
                    return False
                log.info("engine.run_drained", reason=drained.reason)
                return True

    async def _stream(
        self, wid: str, graph: Any, graph_input: Any, *, config: Any, ports: Ports, control: RunControl
    ) -> None:
        running: dict[str, str] = {}
        started: dict[str, float] = {}
        best = 0.0
        progressed = False
        writer = _RunWriter(self.store, wid)
        limits = ports.budget.limits
        stream = graph.astream(
            graph_input, config, context=ports, stream_mode=["custom", "tasks"], durability=self.durability,
            control=control,
        )  # fmt: skip
        try:
            # The step clock: expires when the oldest running step has run for the budget's seconds.
            async with contextlib.aclosing(stream), asyncio.timeout(None) as clock:
                async for mode, chunk in stream:
                    if mode == "custom" and isinstance(chunk, dict):
                        fields: dict[str, Any] = {
                            k: chunk[k] for k in ("phase", "step", "message") if k in chunk
                        }
                        # Parallel branches report their own percent; the workflow's never goes back.
                        best = max(best, float(chunk.get("percent", 0)))
                        fields["percent"] = best
                        fields["waiting_reason"] = ""
                        writer.add(fields)
                    elif mode == "tasks" and isinstance(chunk, dict):
                        if "result" in chunk or "error" in chunk:
                            running.pop(chunk["id"], None)
                            t0 = started.pop(chunk["id"], None)
                            if t0 is not None:
                                self.metrics.step_seconds.labels(chunk["name"]).observe(time.monotonic() - t0)
                            event = "step.failed" if chunk.get("error") else "step.finished"
                            data = {"step": chunk["name"], "error": str(chunk.get("error") or "")[:500]}
                            if not progressed and not chunk.get("error"):
                                # A step finished: the runs before this one were not stuck here (not poison).
                                progressed = True
                                self._background(self.attempts.progressed(wid))
                        else:
                            running[chunk["id"]] = chunk["name"]
                            started[chunk["id"]] = time.monotonic()
                            event, data = "step.started", {"step": chunk["name"]}
                            ports.budget.check_width(len(running), where=chunk["name"])
                        writer.add({"agents_running": sorted(set(running.values()))}, StoreEvent(event, data))
                        clock.reschedule(_step_deadline(started, limits.step_seconds))
        except TimeoutError as exc:
            oldest = min(started, key=started.__getitem__, default=None)
            if oldest is None or not clock.expired():
                raise
            with contextlib.suppress(Exception):
                await writer.drain()
            ran = time.monotonic() - started[oldest]
            raise BudgetExceededError(
                "step_seconds", limits.step_seconds, round(ran, 1), running[oldest]
            ) from exc
        except asyncio.CancelledError:
            writer.cancel()
            raise
        except BaseException:
            with contextlib.suppress(Exception):  # the run's own error is the one to report
                await writer.drain()
            raise
        await writer.drain()


class _RunWriter:
    """The status writes of one run's steps, sent in the background and merged.

    The graph does not wait for its status to be written. Writes gather for up to `linger` seconds
    (a few steps' worth under load), then go out as one atomic update: the latest value of each
    field wins and every event is kept, in order. `drain()` sends what is left at once and returns
    when everything added is in Redis, or raises what writing raised.
    """

    def __init__(self, store: WorkflowStore, wid: str, linger: float = _STATUS_LINGER) -> None:
        self._store = store
        self._wid = wid
        self._linger = linger
        self._fields: dict[str, Any] = {}
        self._events: list[StoreEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()
        self._error: Exception | None = None

    def add(self, fields: dict[str, Any], event: StoreEvent | None = None) -> None:
        self._fields.update(fields)
        if event is not None:
            self._events.append(event)
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._fields or self._events:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self._linger)
                fields, events = self._fields, self._events
                self._fields, self._events = {}, []
                await self._store.update_many(self._wid, fields, events)
        except Exception as exc:  # kept for drain(), which the run always reaches
            self._error = exc
        finally:
            self._task = None

    async def drain(self) -> None:
        self._urgent.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _step_deadline(started: dict[str, float], seconds: float) -> float | None:
    """When the oldest running step reaches `seconds` (loop time), or None when no step runs."""
    if not started or seconds == float("inf"):
        return None
    return asyncio.get_running_loop().time() + (min(started.values()) + seconds - time.monotonic())


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
