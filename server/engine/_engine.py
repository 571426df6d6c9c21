"""The run engine of one instance: claim runs from the Redis Stream, hold leases, execute graphs.

A run is "bring this workflow as far as it can go now" (`server.engine._run`). Runs survive any one
process: a run whose holder stops renewing its claim is taken over (XAUTOCLAIM) and resumes from its last
checkpoint. Pause and cancel published by any instance reach the run that holds the workflow here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from langgraph.runtime import RunControl

from adapters import CpuGate, RedisCheckpointSaver, RunTicket, SecurityAudit, WorkflowRecord, WorkflowStore
from graphs import WORKFLOWS, Ports
from server.engine._attempts import RunAttempts
from server.engine._memory import MemoryMark
from server.engine._run import RunDeps, WorkflowRun
from server.engine._turns import LoopLagControl
from server.telemetry import Metrics

__all__ = ["Engine"]

log = structlog.get_logger(__name__)


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
        metrics: the process's metrics.
        audit: the security audit (quarantines, integrity failures).
        max_attempts: runs of one workflow that may end their worker (process death, hang) in a row before
            the workflow is quarantined.
        memory: the high-water mark above which no new run is claimed (None: no mark).
        cpu_turns: runs of this process that compute at once (one project alone; fewer while projects compete).
        cpu_turns_min: the fewest turns while projects compete.
        loop_lag_target: while projects compete, the event loop's p90 lag the turns aim at (0: fixed turns).
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
        audit: SecurityAudit | None = None,
        max_attempts: int = 3,
        memory: MemoryMark | None = None,
        cpu_turns: int = 1000,
        cpu_turns_min: int = 2,
        loop_lag_target: float = 0.0,
    ) -> None:
        self.store = store
        self.saver = saver
        self.consumer = consumer
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.metrics = metrics or Metrics()
        self.memory = memory
        self._graphs: dict[str, Any] = {}
        self._running: dict[str, tuple[RunTicket, asyncio.Task[None], RunControl]] = {}
        self._deferred: dict[str, RunTicket] = {}
        # Entries claimed, or left deferred, once stopping began: handed back when the stop ends.
        self._leftover: list[RunTicket] = []
        self._claimer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._halted = asyncio.Event()
        self._slot = asyncio.Event()
        self.stats = {"runs_started": 0, "runs_finished": 0, "reclaimed": 0, "quarantined": 0}
        self.gate = CpuGate(cpu_turns)
        self.turns = LoopLagControl(self.gate, most=cpu_turns, least=cpu_turns_min, target=loop_lag_target,
                                    metrics=self.metrics)  # fmt: skip
        self.attempts = RunAttempts(store)
        self._deps = RunDeps(
            store=store, saver=saver, make_ports=make_ports, graph=self.graph, attempts=self.attempts,
            gate=self.gate, metrics=self.metrics, audit=audit, consumer=consumer, lease_ms=self.lease_ms,
            durability=durability, max_attempts=max_attempts, stopping=self._stopping, halted=self._halted,
            background=self._background,
            stats=self.stats,
        )  # fmt: skip
        # Why this instance claims no new runs now ("" while it claims); /readyz shows it.
        self.not_claiming = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def graph(self, name: str) -> Any:
        """The compiled graph of a workflow (compiled once per process)."""
        if name not in self._graphs:
            self._graphs[name] = WORKFLOWS[name].build().compile(checkpointer=self.saver)
        return self._graphs[name]

    async def start(self) -> None:
        """Create the consumer group; start claiming runs, renewing leases and hearing pause/cancel."""
        await self.store.ensure_group()
        self._claimer = self._background(self._claim_loop())
        for coro in (self._heartbeat_loop(), self.store.follow_control(self.control), self.turns.run()):
            self._background(coro)
        log.info("engine.started", consumer=self.consumer, concurrency=self.concurrency)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; drain running runs at their next step boundary, hand back the rest.

        Everything this instance holds when it returns is back in the queue as a fresh entry with its
        lease released, so the next instance (or the next process on the same data) takes it at once.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._slot.set()
        if self._claimer is not None and not self._claimer.done():
            # Let the claim loop end after its current read (200 ms): a read cancelled midway could
            # leave an entry delivered to nobody until the lease runs out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._claimer), 1.0)
        for _, _, control in self._running.values():
            control.request_drain("shutdown")
        running = [t for _, t, _ in self._running.values()]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._hand_back_leftovers()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("engine.stopped", consumer=self.consumer)

    async def halt(self) -> None:
        """Stop at once as a killed process would (tests of crashes): every run and loop is cancelled and
        nothing is written, handed back, acknowledged or released; the leases lapse and other instances
        reclaim the runs."""
        self._halted.set()
        tasks = [t for _, t, _ in self._running.values()] + list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.warning("engine.halted", consumer=self.consumer)

    def health(self) -> dict[str, Any]:
        """What /readyz says of this engine: whether it claims new runs, why not, how many it runs."""
        mark = self.memory
        return {
            "claiming": not self.not_claiming,
            "reason": self.not_claiming,
            "runs": len(self._running),
            **({"resident_mb": round(mark.rss / 2**20, 1), "high_water_mb": round(mark.mark_bytes / 2**20, 1)}
               if mark is not None else {}),
        }  # fmt: skip

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

    async def _hand_back_leftovers(self) -> None:
        leftovers = [*self._leftover, *self._deferred.values()]
        self._leftover.clear()
        self._deferred.clear()
        for ticket in leftovers:
            try:
                await self.store.hand_back(ticket, self.consumer)
            except Exception:
                # Still unacknowledged: reclaimed after the lease, as a dead instance's would be.
                log.exception("engine.hand_back_failed", workflow_id=ticket.workflow_id)
        if leftovers:
            log.info("engine.runs_handed_back", count=len(leftovers),
                     workflows=sorted({t.workflow_id for t in leftovers}))  # fmt: skip

    def held(self) -> list[RunTicket]:
        """The queue entries this instance holds (safe to call from another thread: retried if the loop
        changes them meanwhile)."""
        for _ in range(10):
            try:
                return [
                    *(t for t, _, _ in list(self._running.values())),
                    *self._deferred.values(),
                    *self._leftover,
                ]
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
        if self._stopping.is_set():
            # Claimed by the read in flight when the stop began: not run here, handed back by `stop`.
            self._leftover.append(ticket)
            return
        if wid in self._running:
            # One run per workflow at a time. The run in progress may end before seeing what this entry
            # asks for (a retry, a decision), so run again when it ends; a second duplicate is redundant.
            earlier = self._deferred.get(wid)
            self._deferred[wid] = ticket
            if earlier is not None:
                self._background(self.store.finish(earlier, self.consumer))
            return
        control = RunControl()
        task = asyncio.create_task(WorkflowRun(self._deps, ticket, control).execute())
        self._running[wid] = (ticket, task, control)
        self.stats["runs_started"] += 1
        self.metrics.runs_active.set(len(self._running))

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(wid, None)
            self.stats["runs_finished"] += 1
            self.metrics.runs_active.set(len(self._running))
            self._slot.set()
            deferred = self._deferred.pop(wid, None)
            if deferred is not None and not self._halted.is_set():
                self._spawn(deferred)

        task.add_done_callback(done)

    def _background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
