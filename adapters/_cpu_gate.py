"""How many runs compute at once in one process: runs that wait on an outside service take no turn.

A production spends almost all of its life waiting (GPU jobs, the Brain, the LLM), so an engine holds
hundreds of runs at once. When many of them compute at the same moment, every callback of the event loop
waits behind all of theirs: status calls queue behind graph steps and throughput falls to the overhead
of interleaving. `CpuGate` gives a fixed number of turns. A run takes a turn to compute and gives it
back while it waits outside (`outside()`, used by the service guard and the job wait), so waiting runs
never hold one. Turns go to the oldest workflow first, so under load the productions that started first
finish first instead of all of them advancing together.

Without a run's turn in the context (graph tests, tools that call services directly) `outside()` does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from contextvars import ContextVar

__all__ = ["CpuGate", "RunTurn", "outside"]

_TURN: ContextVar[RunTurn | None] = ContextVar("mo_run_turn", default=None)


class CpuGate:
    """`turns` turns, handed out oldest first (lowest `priority`), first come first served among equals."""

    def __init__(self, turns: int) -> None:
        if turns < 1:
            msg = "a CPU gate needs at least one turn"
            raise ValueError(msg)
        self.free = turns
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Runs waiting for a turn."""
        return sum(1 for *_, f in self._waiters if not f.done())

    async def acquire(self, priority: float) -> None:
        """Wait for a turn."""
        # A free turn means nobody waits: release() hands a turn to a live waiter before freeing one.
        if self.free > 0:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a turn in the same moment it was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a turn back: to the oldest waiting run, else to the pool."""
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class RunTurn:
    """One run's turn: held while it computes, given back while every branch that waits is outside."""

    def __init__(self, gate: CpuGate, priority: float) -> None:
        self.gate = gate
        self.priority = priority
        self.held = False
        self.outside = 0
        self.closed = False
        self._taking = asyncio.Lock()  # one branch at a time takes the turn back: never two turns for a run

    async def take_back(self) -> None:
        """Take the turn again for a branch that stopped waiting outside (unless the run holds it, has
        a branch outside again, or has ended)."""
        async with self._taking:
            if self.held or self.closed or self.outside:
                return
            await self.gate.acquire(self.priority)
            if self.closed:  # the run ended while this branch waited for its turn back
                self.gate.release()
            else:
                self.held = True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Take the turn for the run's duration (this task and the graph tasks it starts)."""
        token = _TURN.set(self)
        try:
            await self.gate.acquire(self.priority)
            self.held = True
            yield
        finally:
            self.closed = True
            if self.held:
                self.held = False
                self.gate.release()
            _TURN.reset(token)


@contextlib.asynccontextmanager
async def outside() -> AsyncIterator[None]:
    """Around a wait on an outside service: the run's turn goes to another run meanwhile.

    Parallel branches of one run share its turn: it is given back when the first of them starts
    waiting and taken again when the last one stops.
    """
    turn = _TURN.get()
    if turn is None:
        yield
        return
    turn.outside += 1
    if turn.outside == 1 and turn.held:
        turn.held = False
        turn.gate.release()
    try:
        yield
    finally:
        turn.outside -= 1
        if turn.outside == 0:
            await turn.take_back()
