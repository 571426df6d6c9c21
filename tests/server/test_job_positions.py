"""Outside jobs carry the graph superstep and task that submitted them (benchmark 7's critical path)."""

from __future__ import annotations

import anyio
import httpx
from mcp import Client

from bench.critical_path import bound_units
from server import Orchestrator, Sandbox
from tests.server.conftest import structured


async def test_jobs_record_their_graph_step_and_task(standins: Sandbox, orch: Orchestrator) -> None:
    """A preview's keyframe job names its superstep and task; /sandbox/jobs lists a workflow's jobs."""
    async with Client(orch.mcp) as client:
        wid = structured(
            await client.call_tool("start_workflow", {"project_id": "p1", "workflow": "preview"})
        )["workflow_id"]
        with anyio.fail_after(30):
            while True:
                st = structured(await client.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 5}))
                if st["status"] in {"completed", "failed", "cancelled"}:
                    break
    assert st["status"] == "completed", st
    async with httpx.AsyncClient(base_url=standins.urls["task_service"]) as http:
        jobs = (await http.get("/sandbox/jobs", params={"workflow_id": wid})).json()["jobs"]
        other = (await http.get("/sandbox/jobs", params={"workflow_id": "wf-0000000000000000"})).json()[
            "jobs"
        ]
    assert other == []
    assert len(jobs) == 1
    meta = jobs[0]["metadata"]
    assert meta["workflow_id"] == wid
    assert isinstance(meta["graph_step"], int)
    node, _, task_id = meta["graph_task"].partition(":")  # the checkpoint namespace: node:task id
    assert node
    assert task_id
    assert bound_units(jobs) == 1


def test_bound_counts_the_longest_chain_per_step() -> None:
    """Sequential jobs of one task add up; side-by-side tasks and overlapping jobs count once."""

    def job(step: int, task: str, start: int, end: int) -> dict[str, object]:
        return {"created_at": f"2026-01-01T00:00:{start:02d}+00:00", "completed_at": f"2026-01-01T00:00:{end:02d}+00:00",
                "metadata": {"graph_step": step, "graph_task": task}}  # fmt: skip

    jobs = [
        job(1, "a:1", 0, 2), job(1, "a:1", 2, 4), job(1, "a:1", 4, 6),  # three in a row
        job(1, "b:2", 0, 2), job(1, "b:2", 0, 2),  # two side by side
        job(2, "c:3", 6, 8), job(2, "c:3", 6, 8),  # overlapping: one link
        job(3, "d:4", 8, 10), job(3, "e:5", 8, 10),  # parallel tasks: one link
    ]  # fmt: skip
    assert bound_units(jobs) == 3 + 1 + 1
