"""Work that cannot run away, in process: poison runs quarantined, the memory mark, the state ceiling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from adapters import AnyRedis
from server import Orchestrator, Sandbox, Settings
from tests.server.conftest import OpenOrchestrator, structured


async def _final(c: Client, wid: str, limit: float = 30) -> dict[str, Any]:
    with anyio.fail_after(limit):
        while True:
            st = structured(
                await c.call_tool(
                    "get_status", {"workflow_id": wid, "wait_seconds": 2, "until": ["completed", "failed"]}
                )
            )
            if st["status"] in {"completed", "failed"}:
                return st


@pytest.fixture
async def quarantining(open_orch: OpenOrchestrator, standins: Sandbox) -> AsyncIterator[Orchestrator]:
    """An orchestrator (engine, stand-ins, HTTP port) that quarantines after two runs ending their worker."""
    async with open_orch(sandbox=standins, run_max_attempts=2) as o:
        yield o


async def test_a_run_that_ended_its_worker_too_often_is_quarantined(
    quarantining: Orchestrator, redis_client: AnyRedis
) -> None:
    """Two earlier runs of a workflow never ended (their processes died): the next claim does not run it; the
    workflow fails as quarantined, with the reason in its status, its events and the security audit, and
    retry_step gives it new attempts."""
    assert quarantining.engine is not None
    async with Client(quarantining.mcp) as c:
        # Record the workflow without queueing it, plant two attempts that never ended, then queue it.
        rec, _ = await quarantining.store.create(project_id="p", workflow="diagnostic_linear", brief="", options={},
                                         created_by="t", correlation_id="c", enqueue=False)  # fmt: skip
        key = quarantining.engine.attempts.key(rec.id)
        for host in ("host-a-e0", "host-b-e1"):
            await redis_client.rpush(key, json.dumps({"instance": host, "at": 1.0, "step": "n3"}))
        await quarantining.store.enqueue(rec.id, "start", "c")
        st = await _final(c, rec.id)
        assert st["status"] == "failed"
        assert st["last_error"].startswith(
            "quarantined: 2 runs of this workflow at step 'n3' ended their worker"
        )
        assert "host-a-e0, host-b-e1" in st["last_error"]
        assert "RUN_MAX_ATTEMPTS=2" in st["last_error"]
        events = [e["what"] for e in await quarantining.store.events(rec.id)]
        assert "workflow.quarantined" in events
        assert "run.started" not in events  # it was not run a third time
        assert quarantining.keys is not None
        audit = [e for e in await quarantining.audit.read() if e["what"] == "run.quarantined"]
        assert [e["data"]["workflow_id"] for e in audit] == [rec.id]
        assert audit[0]["data"]["attempts"] == 2
        assert not await redis_client.exists(key)  # consumed: a retry starts counting afresh
        assert quarantining.engine.stats["quarantined"] == 1

        # After the operator fixed the cause, retry_step runs it to completion.
        structured(await c.call_tool("retry_step", {"workflow_id": rec.id}))
        assert (await _final(c, rec.id))["status"] == "completed"
    assert not await redis_client.exists(key)  # a run that ends with its process alive leaves no attempt
    async with httpx.AsyncClient(base_url=quarantining.http_url) as http:
        assert "mo_runs_quarantined_total 1.0" in (await http.get("/metrics")).text


async def test_one_earlier_attempt_is_not_enough_to_quarantine(
    quarantining: Orchestrator, redis_client: AnyRedis
) -> None:
    """A workflow whose holder died once (below the limit) runs again and completes; its count is cleared."""
    assert quarantining.engine is not None
    async with Client(quarantining.mcp) as c:
        rec, _ = await quarantining.store.create(project_id="p", workflow="diagnostic_linear", brief="", options={},
                                         created_by="t", correlation_id="c", enqueue=False)  # fmt: skip
        key = quarantining.engine.attempts.key(rec.id)
        await redis_client.rpush(key, json.dumps({"instance": "gone", "at": 1.0, "step": ""}))
        await quarantining.store.enqueue(rec.id, "start", "c")
        assert (await _final(c, rec.id))["status"] == "completed"
    assert not await redis_client.exists(key)


async def test_above_the_memory_mark_no_run_is_claimed_and_readyz_says_so(
    open_orch: OpenOrchestrator,
    standins: Sandbox,
    settings: Settings,
) -> None:
    """With the mark below the process's memory the engine claims nothing, /readyz and /metrics say why; once
    under the mark (raised here) it claims and the workflow completes."""
    low = settings.model_copy(update={"memory_high_water_mb": 1})
    async with (
        open_orch(sandbox=standins, base=low) as quarantining,
        Client(quarantining.mcp) as c,
    ):
        assert quarantining.engine is not None
        assert quarantining.engine.memory is not None
        wid = structured(
            await c.call_tool("start_workflow", {"project_id": "p", "workflow": "diagnostic_linear"})
        )["workflow_id"]
        async with httpx.AsyncClient(base_url=quarantining.http_url) as http:
            with anyio.fail_after(10):
                while quarantining.engine.not_claiming == "":
                    await anyio.sleep(0.05)
            ready = (await http.get("/readyz")).json()
            assert ready["engine"]["claiming"] is False
            assert "above MEMORY_HIGH_WATER_MB=1" in ready["engine"]["reason"]
            assert ready["engine"]["resident_mb"] > ready["engine"]["high_water_mb"]
            metrics = (await http.get("/metrics")).text
            assert "mo_engine_claiming 0.0" in metrics
            assert "mo_process_resident_bytes" in metrics
            st = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 1}))
            assert st["status"] == "queued"  # not claimed
            assert quarantining.engine.running == []

            quarantining.engine.memory.mark_bytes = 2**50
            assert (await _final(c, wid))["status"] == "completed"
            ready = (await http.get("/readyz")).json()
            assert ready["engine"] == {**ready["engine"], "claiming": True, "reason": ""}
            assert "mo_engine_claiming 1.0" in (await http.get("/metrics")).text


async def test_a_state_above_the_ceiling_fails_its_workflow_with_a_clear_error(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings
) -> None:
    """A workflow whose state would serialize above STATE_MAX_BYTES fails naming the ceiling; others run."""
    capped = settings.model_copy(update={"state_max_bytes": 4096})
    async with open_orch(sandbox=standins, base=capped) as quarantining, Client(quarantining.mcp) as c:
        big = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                              "brief": "x" * 6000}))["workflow_id"]  # fmt: skip
        small = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                                "brief": "small"}))["workflow_id"]  # fmt: skip
        st = await _final(c, big)
        assert st["status"] == "failed"
        assert "state_too_large" in st["last_error"]
        assert "above STATE_MAX_BYTES=4096" in st["last_error"]
        assert (await _final(c, small))["status"] == "completed"


async def test_a_run_that_finishes_a_step_is_not_charged_for_earlier_deaths(
    quarantining: Orchestrator, redis_client: AnyRedis
) -> None:
    """Progress forgets the earlier attempts but keeps the current one: a workflow taken down with a poison
    neighbour is not quarantined for it, while the current run still counts if its process dies now."""
    assert quarantining.engine is not None
    attempts = quarantining.engine.attempts
    wid = "wf-0123456789abcdef"
    for host in ("a", "b"):
        await attempts.begin(wid, host, "n1")
    now = await attempts.begin(wid, "c", "n1")
    assert [a.instance for a in now] == ["a", "b", "c"]
    await attempts.progressed(wid)
    left = await redis_client.lrange(attempts.key(wid), 0, -1)
    assert [json.loads(x)["instance"] for x in left] == ["c"]
    assert 0 < await redis_client.ttl(attempts.key(wid)) <= quarantining.store.retention_seconds
