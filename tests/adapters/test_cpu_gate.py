"""The CPU gate: a number of computing runs, fair between tenants and oldest first within one, none held by a
run that waits outside."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from adapters import CpuGate, RunTurn, outside


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_no_more_runs_compute_than_there_are_turns() -> None:
    gate = CpuGate(2)
    await gate.acquire(1.0)
    await gate.acquire(2.0)
    third = asyncio.create_task(gate.acquire(3.0))
    await _settle()
    assert not third.done()
    assert gate.waiting == 1
    gate.release()
    await asyncio.wait_for(third, 1)
    assert gate.free == 0


async def test_turns_go_to_the_oldest_workflow_first() -> None:
    gate = CpuGate(1)
    await gate.acquire(0.0)
    order: list[float] = []

    async def wants(priority: float) -> None:
        await gate.acquire(priority)
        order.append(priority)
        gate.release()

    waiters = [asyncio.create_task(wants(p)) for p in (30.0, 10.0, 20.0)]
    await _settle()
    gate.release()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert order == [10.0, 20.0, 30.0]
    assert gate.free == 1


async def test_a_cancelled_waiter_does_not_lose_a_turn() -> None:
    gate = CpuGate(1)
    await gate.acquire(0.0)
    waiter = asyncio.create_task(gate.acquire(1.0))
    await _settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release()
    assert gate.free == 1
    assert gate.waiting == 0


async def test_a_run_waiting_outside_gives_its_turn_to_another_and_takes_it_back() -> None:
    gate = CpuGate(1)
    job = asyncio.Event()
    back = asyncio.Event()

    async def waits_on_a_job() -> None:
        async with RunTurn(gate, 1.0).running():
            async with outside():
                await job.wait()
            back.set()  # computing again: it holds the turn
            await asyncio.sleep(0.05)

    first = asyncio.create_task(waits_on_a_job())
    await _settle()
    # the first run waits outside: a second one computes meanwhile
    async with RunTurn(gate, 2.0).running():
        assert gate.free == 0
        job.set()
        await _settle()
        assert not back.is_set()  # the job is done, but the turn is taken: it waits for it
    await asyncio.wait_for(back.wait(), 1)
    await asyncio.wait_for(first, 1)
    assert gate.free == 1


async def test_parallel_branches_share_their_runs_turn() -> None:
    gate = CpuGate(1)
    jobs = [asyncio.Event(), asyncio.Event()]

    async def branch(i: int) -> None:
        async with outside():
            await jobs[i].wait()

    async def run() -> None:
        async with RunTurn(gate, 1.0).running():
            await asyncio.gather(branch(0), branch(1))
            assert gate.free == 0

    task = asyncio.create_task(run())
    await _settle()
    assert gate.free == 1  # both branches wait outside: the turn is free
    jobs[0].set()
    await _settle()
    assert gate.free == 1  # one branch still waits outside
    jobs[1].set()
    await asyncio.wait_for(task, 1)
    assert gate.free == 1


async def test_a_run_ending_while_a_branch_waits_for_its_turn_back_keeps_no_turn() -> None:
    gate = CpuGate(1)
    job = asyncio.Event()

    async def run() -> None:
        async with RunTurn(gate, 1.0).running(), outside():
            await job.wait()

    task = asyncio.create_task(run())
    await _settle()
    await gate.acquire(0.0)  # another run takes the turn
    job.set()
    await _settle()
    task.cancel()  # the first run is cancelled while it waits for the turn back
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.release()
    assert gate.free == 1
    assert gate.waiting == 0


async def test_outside_a_run_the_gate_is_not_involved() -> None:
    async with outside():
        pass
    with pytest.raises(ValueError, match="at least one turn"):
        CpuGate(0)


async def test_branches_coming_back_one_after_another_take_one_turn_between_them() -> None:
    """Branch A comes back while the turn is taken and waits for it; meanwhile branch B goes outside
    and comes back too. Both waiting for a turn must not give the run two turns (one would be lost
    for good when the run ends, and the gate would run dry)."""
    gate = CpuGate(1)
    a_job, b_job = asyncio.Event(), asyncio.Event()
    b_started = asyncio.Event()

    async def branch_a() -> None:
        async with outside():
            await a_job.wait()

    async def branch_b() -> None:
        await b_started.wait()
        async with outside():
            await b_job.wait()

    async def run() -> None:
        async with RunTurn(gate, 1.0).running():
            await asyncio.gather(branch_a(), branch_b())

    task = asyncio.create_task(run())
    await _settle()
    await gate.acquire(0.0)  # another run computes
    a_job.set()
    await _settle()  # A waits for the turn back
    b_started.set()
    await _settle()
    b_job.set()  # B went outside and comes back while A still waits
    await _settle()
    gate.release()
    await asyncio.wait_for(task, 1)
    assert gate.free == 1
    assert gate.waiting == 0


async def _busy(gate: CpuGate, tenant: str, priority: float, order: list[str], seconds: float) -> None:
    """One turn of `seconds` (counted, not slept)."""
    await gate.acquire(priority, tenant)
    order.append(tenant)
    await asyncio.sleep(0)
    gate.release(tenant, seconds)


async def test_a_newcomer_tenant_computes_at_once_whatever_the_others_backlog() -> None:
    """200 runs of project A wait for the one turn, which A holds; B's run, started last and the youngest
    workflow of all, computes at once on a lent turn, which disappears when a turn comes back: A's backlog goes
    on after it, one at a time."""
    gate = CpuGate(1)
    await gate.acquire(0.0, "A")
    order: list[str] = []
    backlog = [asyncio.create_task(_busy(gate, "A", float(i), order, 0.01)) for i in range(200)]
    await _settle()
    assert gate.waiting == 200
    newcomer = asyncio.create_task(_busy(gate, "B", 1e12, order, 0.01))
    await _settle()
    assert order == ["B"]  # before A gave anything back
    assert newcomer.done()
    assert gate.free == 0  # the lent turn went back as B's turn came back
    gate.release("A", 0.01)
    await asyncio.wait_for(asyncio.gather(*backlog), 5)
    assert order.count("A") == 200
    assert gate.free == 1
    assert not gate.held


async def test_a_queued_tenant_is_served_at_the_next_grant_whatever_the_others_backlog() -> None:
    """Lent turns run out (at most as many as the turns): a tenant that still has to queue is served at the next
    turn that comes back, before the 200 of A queued earlier."""
    gate = CpuGate(1)
    await gate.acquire(0.0, "A")
    await gate.acquire(0.0, "C")  # the one lent turn
    order: list[str] = []
    backlog = [asyncio.create_task(_busy(gate, "A", float(i), order, 0.01)) for i in range(200)]
    await _settle()
    newcomer = asyncio.create_task(_busy(gate, "B", 1e12, order, 0.01))
    await _settle()
    assert order == []
    assert gate.waiting == 201
    gate.release("C", 0.0)  # the lent turn disappears
    gate.release("A", 0.01)
    await asyncio.wait_for(asyncio.gather(*backlog, newcomer), 5)
    assert order[0] == "B"
    assert order.count("A") == 200
    assert gate.free == 1
    assert not gate.held


async def test_two_busy_tenants_share_turn_seconds_equally_whatever_their_backlogs() -> None:
    """A queues 3x as many runs as B, each holding its turn as long: over the contested grants each gets
    about half the turn-seconds."""
    gate = CpuGate(2)
    order: list[str] = []
    runs = [asyncio.create_task(_busy(gate, "A", float(i), order, 0.02)) for i in range(300)]
    runs += [asyncio.create_task(_busy(gate, "B", float(i), order, 0.02)) for i in range(100)]
    await asyncio.wait_for(asyncio.gather(*runs), 5)
    contested = order[: order.index("B") + 2 * 100]  # until B's last run
    share_b = contested.count("B") / len(contested)
    assert 0.45 <= share_b <= 0.55, share_b
    assert gate.free == 2


async def test_a_tenant_of_weight_two_gets_twice_the_turns() -> None:
    gate = CpuGate(1)
    gate.set_weight("A", 2.0)
    await gate.acquire(0.0, "X")
    order: list[str] = []
    runs = [asyncio.create_task(_busy(gate, t, float(i), order, 0.01)) for i in range(90) for t in "AB"]
    await _settle()
    gate.release("X", 0.0)
    await asyncio.wait_for(asyncio.gather(*runs), 5)
    first = order[:90]
    assert abs(first.count("A") - 2 * first.count("B")) <= 3


async def test_within_a_tenant_the_oldest_workflow_goes_first() -> None:
    gate = CpuGate(1)
    await gate.acquire(0.0, "A")
    order: list[float] = []

    async def wants(priority: float) -> None:
        await gate.acquire(priority, "A")
        order.append(priority)
        gate.release("A", 0.01)

    waiters = [asyncio.create_task(wants(p)) for p in (30.0, 10.0, 20.0)]
    await _settle()
    gate.release("A", 0.01)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert order == [10.0, 20.0, 30.0]


async def test_turns_are_conserved_when_waiters_of_many_tenants_are_cancelled() -> None:
    gate = CpuGate(3)
    rng = random.Random(23)  # noqa: S311 - which tenant, not a secret

    async def maybe(i: int) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                _busy(gate, rng.choice("ABCDE"), float(i), [], 0.001), 0 if i % 3 == 0 else 5
            )

    await asyncio.gather(*(maybe(i) for i in range(300)))
    assert gate.free == 3
    assert not gate.held
    assert gate.waiting == 0


async def test_capacity_lowered_takes_effect_as_turns_come_back_and_raised_serves_waiters_at_once() -> None:
    gate = CpuGate(4)
    for i in range(4):
        await gate.acquire(float(i), "A")
    gate.set_capacity(2)
    gate.release("A", 0.0)
    gate.release("A", 0.0)
    assert gate.free == 0  # two turns went away
    got: list[float] = []

    async def wants(priority: float) -> None:
        await gate.acquire(priority, "A")
        got.append(priority)

    waiters = [asyncio.create_task(wants(p)) for p in (10.0, 11.0, 12.0)]
    await _settle()
    assert got == []
    assert gate.waiting_by_tenant() == [("A", 3)]
    gate.set_capacity(4)
    await _settle()
    assert got == [10.0, 11.0]
    gate.release("A", 0.0)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert gate.free == 0
    assert gate.turns == 4


async def test_lent_turns_are_bounded_by_the_turns_and_vanish_as_turns_come_back() -> None:
    """Tenants holding no turn while another holds them all each get one lent turn, up to as many as there are
    turns; the next waits; every lent turn disappears as a turn comes back, so the pool ends as it began."""
    gate = CpuGate(2)
    await gate.acquire(0.0, "A")
    await gate.acquire(1.0, "A")
    got: list[str] = []

    async def wants(tenant: str) -> None:
        await gate.acquire(0.0, tenant)
        got.append(tenant)

    waiters = [asyncio.create_task(wants(t)) for t in "BCD"]
    await _settle()
    assert got == ["B", "C"]
    assert gate.free == -2
    assert [t for t, _ in gate.waiting_by_tenant()] == ["D"]
    for tenant in ("A", "A", "B"):  # two vanish, the third goes to D
        gate.release(tenant, 0.0)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert got == ["B", "C", "D"]
    for tenant in ("C", "D"):
        gate.release(tenant, 0.0)
    assert gate.free == 2
    assert not gate.held
