"""How many runs compute at once in one process, and whose turn is next: fair between tenants (projects).

A production spends almost all of its life waiting (GPU jobs, the Brain, the LLM), so an engine holds
hundreds of runs at once. When many of them compute at the same moment, every callback of the event loop
waits behind all of theirs: status calls queue behind graph steps and throughput falls to the overhead
of interleaving. `CpuGate` gives a number of turns. A run takes a turn to compute and gives it back while
it waits outside (`outside()`, used by the service guard and the job wait), so waiting runs never hold one.

Whose turn is next is decided by start-time fair queuing over tenants on turn-seconds: each tenant has a
virtual time, the seconds of turns it has held (over its weight); a free turn goes to the waiting tenant
with the lowest virtual time, and within a tenant to its oldest workflow (lowest `priority`), first come
first served among equals. A tenant that starts waiting after being idle starts at the virtual clock (the
virtual time of the last grant): idleness banks no credit, and a newcomer is served at the next grant,
whatever backlog another tenant has. One tenant alone gets every turn, oldest workflow first.

A tenant that holds no turn while others hold them all does not even wait for the next grant: it computes
at once on a lent turn, which disappears when the next turn comes back (at most as many lent at a time as
there are turns). Waiting for a grant cost it a residual turn of another tenant's run at each of its many
returns from outside; in a 200-production flood of one project, another's production took 1.46-1.54x its
time alone with grants only and 1.19-1.24x with lent turns (benchmark 11).

The number of turns may change while runs hold them (`set_capacity`, the engine's loop-lag control):
more wake waiters at once, fewer take effect as holders give turns back.

Without a run's turn in the context (graph tests, tools that call services directly) `outside()` does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextvars import ContextVar

__all__ = ["CpuGate", "RunTurn", "outside"]

_TURN: ContextVar[RunTurn | None] = ContextVar("mo_run_turn", default=None)

_Waiter = tuple[float, int, asyncio.Future[None]]
_FORGET_AFTER = 4096  # tenants remembered before the idle ones are forgotten


class CpuGate:
    """`turns` turns shared between tenants (start-time fair queuing), oldest workflow first within one.

    Args:
        turns: how many runs compute at once.
    """

    def __init__(self, turns: int) -> None:
        if turns < 1:
            msg = "a CPU gate needs at least one turn"
            raise ValueError(msg)
        self.turns = turns
        self.free = turns
        self.held: Counter[str] = Counter()
        # Runs in progress by tenant, holding a turn or not (waiting outside counts): who competes.
        self.runs: Counter[str] = Counter()
        self.clock = 0.0
        self._waiters: dict[str, list[_Waiter]] = {}
        # Tenants with waiters, by the virtual time they start at (re-keyed lazily when it moved on).
        self._ready: list[tuple[float, int, str]] = []
        self._vt: dict[str, float] = {}
        self._weight: dict[str, float] = {}
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Runs waiting for a turn."""
        return sum(1 for q in self._waiters.values() for *_, f in q if not f.done())

    def waiting_by_tenant(self, top: int = 20) -> list[tuple[str, int]]:
        """The tenants with the most runs waiting for a turn, most first."""
        counts = [(t, sum(1 for *_, f in q if not f.done())) for t, q in self._waiters.items()]
        return sorted((c for c in counts if c[1]), key=lambda c: -c[1])[:top]

    def tenants_running(self) -> int:
        """Tenants with runs in progress (computing, waiting for a turn or waiting outside)."""
        return len(self.runs)

    def set_weight(self, tenant: str, weight: float) -> None:
        """A tenant's share relative to the others (default 1)."""
        self._weight[tenant] = max(weight, 1e-3)

    def set_capacity(self, turns: int) -> None:
        """Change how many turns there are: more are handed to waiters now, fewer take effect as holders give
        theirs back."""
        turns = max(1, turns)
        self.free += turns - self.turns
        self.turns = turns
        while self.free > 0 and self._grant():
            self.free -= 1

    async def acquire(self, priority: float, tenant: str = "") -> None:
        """Wait for a turn (`priority`: lower first within the tenant, e.g. the workflow's creation time)."""
        # A free turn means nobody waits: release() and set_capacity() serve live waiters before freeing one.
        if self.free > 0 or self._lend(tenant):
            self.free -= 1
            self.held[tenant] += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.get(tenant)
        if queue is None:
            queue = self._waiters[tenant] = []
            heapq.heappush(
                self._ready, (max(self._vt.get(tenant, 0.0), self.clock), next(self._order), tenant)
            )
        heapq.heappush(queue, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(tenant)  # handed a turn in the same moment it was cancelled: pass it on
            raise

    def _lend(self, tenant: str) -> bool:
        """Whether a tenant that holds no turn, while others hold them all, computes at once on a lent turn.

        The lent turn disappears when the next one comes back (as when the capacity is lowered), so the engine
        computes at most twice its turns for a moment. Without it, a tenant's every step waited for one of
        another tenant's runs to reach its next wait outside (~0.1-0.2 s under a flood, many times a step).
        """
        return (
            self.free > -self.turns
            and bool(self.held)
            and tenant not in self.held
            and tenant not in self._waiters
        )

    def release(self, tenant: str = "", held_seconds: float = 0.0) -> None:
        """Give a turn back after holding it `held_seconds`: to the next tenant's oldest waiting run, else to
        the pool (or to nobody, while there are more turns out than the capacity)."""
        self.held[tenant] -= 1
        if self.held[tenant] <= 0:
            del self.held[tenant]
        weight = self._weight.get(tenant, 1.0)
        self._vt[tenant] = max(self._vt.get(tenant, 0.0), self.clock) + held_seconds / weight
        if len(self._vt) > _FORGET_AFTER:
            self._forget_idle()
        # While more turns are out than the capacity (it was lowered), this one disappears.
        if self.free < 0 or not self._grant():
            self.free += 1

    def _grant(self) -> bool:
        """Hand one turn to the waiting tenant with the lowest virtual start; False when nobody waits."""
        while self._ready:
            start, _, tenant = heapq.heappop(self._ready)
            current = max(self._vt.get(tenant, 0.0), start)
            if current > start:  # it held turns since it queued: its place moved back
                heapq.heappush(self._ready, (current, next(self._order), tenant))
                continue
            queue = self._waiters.get(tenant, [])
            while queue:
                *_, fut = heapq.heappop(queue)
                if fut.done():  # cancelled while waiting
                    continue
                self.clock = max(self.clock, start)
                self.held[tenant] += 1
                fut.set_result(None)
                if queue:
                    heapq.heappush(self._ready, (start, next(self._order), tenant))
                else:
                    del self._waiters[tenant]
                return True
            self._waiters.pop(tenant, None)
        return False

    def _forget_idle(self) -> None:
        # A tenant whose virtual time the clock has passed would start at the clock anyway.
        for tenant, vt in list(self._vt.items()):
            if vt <= self.clock and tenant not in self.held and tenant not in self._waiters:
                del self._vt[tenant]


class RunTurn:
    """One run's turn: held while it computes, given back while every branch that waits is outside.

    Args:
        gate: the process's gate.
        priority: the run's place within its tenant (lower first: the workflow's creation time).
        tenant: whose turns these are (the workflow's project).
    """

    def __init__(self, gate: CpuGate, priority: float, tenant: str = "") -> None:
        self.gate = gate
        self.priority = priority
        self.tenant = tenant
        self.held = False
        self.outside = 0
        self.closed = False
        self._since = 0.0
        self._taking = asyncio.Lock()  # one branch at a time takes the turn back: never two turns for a run

    def _granted(self) -> None:
        self.held = True
        self._since = time.monotonic()

    def give_back(self) -> None:
        """Give the turn back, counting how long it was held against the tenant."""
        self.held = False
        self.gate.release(self.tenant, time.monotonic() - self._since)

    async def take_back(self) -> None:
        """Take the turn again for a branch that stopped waiting outside (unless the run holds it, has
        a branch outside again, or has ended)."""
        async with self._taking:
            if self.held or self.closed or self.outside:
                return
            await self.gate.acquire(self.priority, self.tenant)
            if self.closed:  # the run ended while this branch waited for its turn back
                self.gate.release(self.tenant)
            else:
                self._granted()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Take the turn for the run's duration (this task and the graph tasks it starts)."""
        token = _TURN.set(self)
        self.gate.runs[self.tenant] += 1
        try:
            await self.gate.acquire(self.priority, self.tenant)
            self._granted()
            yield
        finally:
            self.closed = True
            if self.held:
                self.give_back()
            self.gate.runs[self.tenant] -= 1
            if self.gate.runs[self.tenant] <= 0:
                del self.gate.runs[self.tenant]
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
        turn.give_back()
    try:
        yield
    finally:
        turn.outside -= 1
        if turn.outside == 0:
            await turn.take_back()
