"""The CPU turns' loop-lag control: every turn to one project alone, fewer while projects compete and the
event loop lags (decisions from given lags: no timing here); and in the engine, another project's run is not
served after a flood's backlog."""

from __future__ import annotations

import asyncio

from adapters import CpuGate, RunTurn
from server import Caller
from server.engine import LoopLagControl
from server.telemetry import Metrics
from tests.server.conftest import OpenOrchestrator


async def _runs_of(gate: CpuGate, projects: list[str], stop: asyncio.Event) -> list[asyncio.Task[None]]:
    async def run(project: str) -> None:
        async with RunTurn(gate, 0.0, project).running():
            await stop.wait()

    tasks = [asyncio.create_task(run(p)) for p in projects]
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks


async def test_one_project_alone_keeps_every_turn_however_the_loop_lags() -> None:
    gate = CpuGate(16)
    control = LoopLagControl(gate, most=16, least=2, target=0.01, metrics=Metrics())
    stop = asyncio.Event()
    runs = await _runs_of(gate, ["A"] * 20, stop)
    assert gate.tenants_running() == 1
    assert control.decide(p90=0.5) == 16
    stop.set()
    await asyncio.gather(*runs)
    assert gate.tenants_running() == 0


async def test_while_projects_compete_turns_follow_the_loop_lag() -> None:
    """Far above the target: cut in proportion; above: by 30%; well below with runs waiting: one more;
    never under the floor or over the ceiling; back to every turn when one project is left."""
    gate = CpuGate(16)
    control = LoopLagControl(gate, most=16, least=2, target=0.01, metrics=Metrics())
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    runs = await _runs_of(gate, ["A"] * 10, stop_a) + await _runs_of(gate, ["B"], stop_b)
    waiting = await _runs_of(gate, ["A"] * 10, stop_a)  # more than the turns: some wait
    assert gate.tenants_running() == 2
    assert control.decide(p90=0.08) == 2  # 16 * 10/80
    assert control.decide(p90=0.012) == 11  # 16 * 0.7
    gate.set_capacity(4)
    assert control.decide(p90=0.002) == 5  # runs wait: one more
    assert control.decide(p90=0.007) == 4  # between half the target and the target: kept
    gate.set_capacity(2)
    assert control.decide(p90=1.0) == 2
    stop_b.set()
    await asyncio.wait_for(runs[-1], 5)
    assert control.decide(p90=1.0) == 16
    gate.set_capacity(16)
    stop_a.set()
    await asyncio.wait_for(asyncio.gather(*runs, *waiting), 5)
    assert gate.free == 16


def test_a_target_of_zero_keeps_the_turns_fixed() -> None:
    gate = CpuGate(8)
    control = LoopLagControl(gate, most=8, least=2, target=0.0, metrics=Metrics())
    gate.runs.update({"A": 1, "B": 1})
    assert control.decide(p90=1.0) == 8


async def test_in_the_engine_another_projects_run_is_not_served_after_a_floods_backlog(
    open_orch: OpenOrchestrator,
) -> None:
    """One turn, fixed: 30 runs of project A queued for it before one of B. B's run completes among the first
    few, not after A's backlog (the order of completions, not their times)."""
    async with open_orch(http=False, worker_cpu_turns=1, worker_loop_lag_target_ms=0) as orch:
        caller = Caller()
        flood = [
            (
                await orch.service.start_workflow(caller, project_id="a", workflow="diagnostic_linear")
            ).workflow_id
            for _ in range(30)
        ]
        b = (
            await orch.service.start_workflow(caller, project_id="b", workflow="diagnostic_linear")
        ).workflow_id
        ends = {}
        for wid in [*flood, b]:
            st = await orch.service.wait_status(caller, wid, 60, until=["completed"])
            assert st.status == "completed", st.last_error
            ends[wid] = st.updated_at
    after_b = sum(1 for w in flood if ends[w] > ends[b])
    assert after_b >= 15, f"only {after_b} of A's 30 runs completed after B's"
