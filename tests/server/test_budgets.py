"""Budgets enforced by the engine: a workflow that reaches one stops, failed, and retry_step continues it once raised."""

from __future__ import annotations

import dataclasses
from typing import Any

from mcp import Client

from server import Orchestrator, Sandbox
from tests.server.conftest import OpenOrchestrator, structured, wait_status

SMALL: dict[str, Any] = {"scenes": 1, "characters": 1, "auto_approve": True}


async def _start(c: Client, workflow: str = "movie_production", **options: Any) -> str:
    args = {"project_id": "p", "brief": "a storm", "workflow": workflow, "options": options}
    return str(structured(await c.call_tool("start_workflow", args))["workflow_id"])


async def _budget_event(orch: Orchestrator, wid: str) -> dict[str, Any]:
    events = [e for e in await orch.store.events(wid) if e["what"] == "workflow.budget_exceeded"]
    assert len(events) == 1, [e["what"] for e in await orch.store.events(wid)]
    data: dict[str, Any] = events[0]["data"]
    return data


async def test_agent_executions_budget_stops_then_raised_budget_and_retry_complete(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    """At 12 agent executions the 13th is refused; after a restart with the default budget, retry_step finishes."""
    async with open_orch(sandbox=standins, budget_agent_executions=12) as o:
        async with Client(o.mcp) as c:
            wid = await _start(c, **SMALL)
            failed = await wait_status(c, wid, {"failed", "completed"})
        assert failed["status"] == "failed"
        assert failed["last_error"].startswith("budget_exceeded: budget agent_executions exceeded at step ")
        assert "reached 13, the ceiling is 12" in failed["last_error"]
        event = await _budget_event(o, wid)
        assert (event["budget"], event["limit"], event["reached"]) == ("agent_executions", 12, 13)
        assert o.budgets is not None
        assert (await o.budgets.used(wid))["agent_executions"] == 12
    # The operator raises BUDGET_AGENT_EXECUTIONS (here: back to its default) and restarts.
    async with open_orch(sandbox=standins) as o, Client(o.mcp) as c:
        await c.call_tool("retry_step", {"workflow_id": wid})
        done = await wait_status(c, wid, {"failed", "completed"})
        assert done["status"] == "completed", done["last_error"]
        assert done["result"]["outcome"] == "distributed"
        assert o.budgets is not None
        used = (await o.budgets.used(wid))["agent_executions"]
    # The count went on from 12, and the work finished before the stop was not done again: had it been,
    # the count would be at least 12 more than the production's own (which leaves out failed attempts).
    assert done["result"]["agent_executions"] <= used < 12 + done["result"]["agent_executions"]


async def test_step_seconds_budget_stops_a_slow_step_then_raised_budget_and_retry_complete(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    """A step waiting on a slow outside job past the step budget stops the workflow; raised, retry completes."""
    async with open_orch(sandbox=standins, budget_step_seconds=0.5) as o:
        standins.task_service.latency = 3.0
        async with Client(o.mcp) as c:
            wid = await _start(c, "preview")
            failed = await wait_status(c, wid, {"failed", "completed"})
            assert failed["status"] == "failed"
            assert "budget step_seconds exceeded at step 'keyframe'" in failed["last_error"]
            assert "the ceiling is 0.5" in failed["last_error"]
            event = await _budget_event(o, wid)
            assert event["budget"] == "step_seconds"
            assert event["reached"] >= 0.5
            # Raising the deployment's ceiling in place is what a restart with a raised BUDGET_STEP_SECONDS
            # does; in place, the Task Service stand-in keeps the job the stopped step submitted.
            assert o.budgets is not None
            o.budgets.deployment = dataclasses.replace(o.budgets.deployment, step_seconds=60.0)
            await c.call_tool("retry_step", {"workflow_id": wid})
            done = await wait_status(c, wid, {"failed", "completed"})
        assert done["status"] == "completed", done["last_error"]
        # the step resumed waiting for the job it had submitted instead of submitting another
        assert standins.task_service.submits_by_key == {f"{wid}:keyframe": 1}


async def test_fan_out_budget_stops_a_wide_step(open_orch: OpenOrchestrator, standins: Sandbox) -> None:
    """The breakdown refuses a cast wider than the fan-out budget; the engine refuses two branches over one."""
    async with open_orch(sandbox=standins, budget_fan_out=2) as o:
        async with Client(o.mcp) as c:
            wide = await _start(c, **{**SMALL, "characters": 3})
            failed = await wait_status(c, wide, {"failed", "completed"})
            assert (
                "budget fan_out exceeded at step 'breakdown': reached 3, the ceiling is 2"
                in failed["last_error"]
            )
            # a workflow may ask for less than the deployment: one branch at a time, and visual and audio
            # design run side by side, which the engine itself catches as the steps start
            narrow = await _start(c, **SMALL, max_fan_out=1)
            failed = await wait_status(c, narrow, {"failed", "completed"})
        assert failed["status"] == "failed"
        assert "budget fan_out exceeded" in failed["last_error"]
        assert "reached 2, the ceiling is 1" in failed["last_error"]
        assert (await _budget_event(o, narrow))["budget"] == "fan_out"


async def test_outside_jobs_budget_asked_for_by_the_workflow(standins: Sandbox, orch: Orchestrator) -> None:
    """A workflow that asks for one outside job stops at its second, before submitting it."""
    async with Client(orch.mcp) as c:
        wid = await _start(c, **SMALL, max_outside_jobs=1)
        failed = await wait_status(c, wid, {"failed", "completed"})
    assert failed["status"] == "failed"
    assert "budget outside_jobs exceeded" in failed["last_error"]
    assert "reached 2, the ceiling is 1" in failed["last_error"]
    ts = standins.task_service
    assert sum(n for key, n in ts.submits_by_key.items() if key.startswith(wid)) == 1
