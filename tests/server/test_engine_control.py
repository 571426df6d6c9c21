"""The run engine in process: pause, resume, cancel (with outside jobs), retry a failed step, service outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import anyio
import pytest
from mcp import Client

from server import Caller, Orchestrator, Sandbox
from tests.server.conftest import OpenOrchestrator, error_text, structured, wait_status


@pytest.fixture
async def tripping(open_orch: OpenOrchestrator, standins: Sandbox) -> AsyncIterator[Orchestrator]:
    """The conftest's orchestrator, but its breakers trip fast and half-open fast."""
    async with open_orch(sandbox=standins, breaker_fail_max=2, breaker_reset_seconds=0.5) as o:
        yield o


async def _status(c: Client, wid: str) -> dict[str, Any]:
    return structured(await c.call_tool("get_status", {"workflow_id": wid}))


async def _start(c: Client, **args: Any) -> str:
    # preview takes no production options (each workflow refuses options it does not have)
    production = args.get("workflow", "movie_production") != "preview"
    base = {
        "project_id": "p",
        "brief": "storm",
        "options": {"scenes": 3, "characters": 2, "auto_approve": True} if production else {},
    }
    result = structured(await c.call_tool("start_workflow", base | args))
    return str(result["workflow_id"])


async def test_pause_stops_at_a_step_boundary_and_resume_finishes(
    standins: Sandbox, tripping: Orchestrator
) -> None:
    """Pausing a running production stops it with its checkpoint; nothing moves while paused; resume completes it."""
    standins.task_service.latency = 0.3
    async with Client(tripping.mcp) as c:
        wid = await _start(c)
        await wait_status(c, wid, where=lambda s: s["status"] == "running" and s["percent"] >= 20)
        await c.call_tool("pause_workflow", {"workflow_id": wid})
        paused = await wait_status(c, wid, ["paused"])
        await anyio.sleep(1.0)
        still = await _status(c, wid)
        assert still["status"] == "paused"
        assert still["percent"] == paused["percent"]
        assert "conflict" in error_text(await c.call_tool("retry_step", {"workflow_id": wid}))
        await c.call_tool("resume_workflow", {"workflow_id": wid})
        done = await wait_status(c, wid, {"completed", "failed"})
    assert done["status"] == "completed", done["last_error"]
    assert done["result"]["outcome"] == "distributed"
    events = [e["what"] for e in await tripping.store.events(wid)]
    assert (
        events.index("workflow.paused")
        < events.index("workflow.resumed")
        < events.index("workflow.completed")
    )


async def test_cancel_mid_run_cancels_outside_jobs(standins: Sandbox, tripping: Orchestrator) -> None:
    """Cancelling while Task Service jobs run marks the workflow cancelled and DELETEs its jobs (which the
    real service answers 200 for, and lets a job a worker already runs complete anyway)."""
    ts = standins.task_service
    ts.latency = 30.0
    async with Client(tripping.mcp) as c:
        wid = await _start(c)
        with anyio.fail_after(30):
            while not any(t["status"] == "processing" for t in ts.tasks.values()):
                await anyio.sleep(0.05)
        cancelled = structured(await c.call_tool("cancel_workflow", {"workflow_id": wid}))
        assert cancelled["status"] in {"cancelled", "running"}
        final = await wait_status(c, wid, ["cancelled"], limit=10)
    assert final["status"] == "cancelled"
    running = [t for t in ts.tasks.values() if not t["ended"]]
    assert running
    assert all(t["revoked"] for t in running)
    engine = tripping.engine
    assert engine is not None
    with anyio.fail_after(5):
        while wid in engine.running:
            await anyio.sleep(0.02)


async def test_retry_step_reruns_only_the_failed_step(standins: Sandbox, tripping: Orchestrator) -> None:
    """A step whose job fails with no alternative fails the workflow; retry_step re-runs just that step."""
    ts = standins.task_service
    ts.failure_rate = 1.0
    async with Client(tripping.mcp) as c:
        wid = await _start(c, workflow="preview")
        failed = await wait_status(c, wid, {"failed", "completed"})
        assert failed["status"] == "failed"
        assert "keyframe" in failed["last_error"]
        ts.failure_rate = 0.0
        retried = structured(await c.call_tool("retry_step", {"workflow_id": wid}))
        assert retried["status"] == "queued"
        done = await wait_status(c, wid, {"failed", "completed"})
    assert done["status"] == "completed"
    started = [e["data"]["step"] for e in await tripping.store.events(wid) if e["what"] == "step.started"]
    assert started.count("concept") == 1
    assert started.count("keyframe") >= 2


async def test_task_service_outage_waits_with_a_clear_status_then_completes(
    standins: Sandbox, tripping: Orchestrator
) -> None:
    """During an outage the breaker opens, workflows wait saying why, and all complete after recovery."""
    ts = standins.task_service
    ts.outage = True
    async with Client(tripping.mcp) as c:
        wids = [await _start(c, workflow="preview", brief=f"b{i}") for i in range(3)]
        waiting = await wait_status(c, wids[0], where=lambda s: "circuit open" in s["waiting_reason"])
        assert waiting["status"] == "running"
        assert waiting["services"]["task-service"] in {"open", "half-open"}
        await anyio.sleep(1.0)
        for w in wids:
            assert (await _status(c, w))["status"] != "failed"
        ts.outage = False
        finals = [await wait_status(c, w, {"completed", "failed"}) for w in wids]
    assert [f["status"] for f in finals] == ["completed"] * 3
    assert finals[0]["waiting_reason"] == ""
    assert any(e["what"] == "service.waiting" for e in await tripping.store.events(wids[0]))


async def test_get_status_wait_returns_on_change_and_reports_progress(tripping: Orchestrator) -> None:
    """get_status with wait_seconds returns at the next change and sends progress notifications."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(tripping.mcp) as c:
        wid = await _start(c, workflow="preview")
        with anyio.fail_after(10):
            result = await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 30},
                                       progress_callback=on_progress)  # fmt: skip
        assert structured(result)["updated_at"] > 0
    assert seen


async def test_log_lines_of_a_run_carry_workflow_run_node_and_correlation_ids(tripping: Orchestrator) -> None:
    """A log line written inside an agent carries workflow id, run id, node and correlation id."""
    import structlog

    seen: list[dict[str, Any]] = []

    def keep(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
        seen.append(dict(event))
        return ""

    from server.telemetry import add_graph_node

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, add_graph_node, keep])
    try:
        async with Client(tripping.mcp) as c:
            wid = await _start(c, workflow="preview")
            await wait_status(c, wid, {"completed", "failed"})
    finally:
        structlog.reset_defaults()
    submitted = next(e for e in seen if e.get("event") == "jobs.submitted")
    assert submitted["workflow_id"] == wid
    assert submitted["run_id"]
    assert submitted["correlation_id"]
    assert submitted["node"] == "keyframe"


async def test_a_status_wait_sees_a_change_whose_notice_was_lost(open_orch: OpenOrchestrator) -> None:
    """A change made while the instance's pub/sub follower is away still ends a waiting get_status."""
    async with open_orch(engine=False, http=False, notice_backstop_seconds=0.2) as o:
        assert o.notifier is not None
        started = await o.service.start_workflow(Caller(), project_id="p", workflow="preview")
        waiting = asyncio.create_task(
            o.service.wait_status(Caller(), started.workflow_id, 30, until=["completed"])
        )
        await asyncio.sleep(0.1)
        await o.notifier.stop()  # notices published from now on reach nobody here
        await o.store.update(started.workflow_id, {"status": "completed"}, event="workflow.completed")
        with anyio.fail_after(3):  # well before the wait's own 30 s
            status = await waiting
        assert status.status == "completed"


async def test_step_events_of_a_run_are_all_recorded_in_order(tripping: Orchestrator) -> None:
    """Step status writes are merged in the background, yet every step's start and end is in the log, in order."""
    async with Client(tripping.mcp) as c:
        wid = str(structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "diagnostic_linear"}))[
            "workflow_id"
        ])  # fmt: skip
        await wait_status(c, wid, ["completed"])
    events = await tripping.store.events(wid)
    steps = [(e["what"], e["data"]["step"]) for e in events if e["what"].startswith("step.")]
    expected = [(what, f"n{i}") for i in range(10) for what in ("step.started", "step.finished")]
    assert steps == expected
    whats = [e["what"] for e in events]
    assert whats.index("workflow.completed") > whats.index("step.finished")
    rec = await tripping.store.get(wid)
    assert rec is not None
    assert rec.agents_running == []
