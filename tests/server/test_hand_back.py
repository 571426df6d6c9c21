"""Work a stopping engine holds goes back to the queue at once: the next engine takes it without waiting
out the lease (one-shot stdio clients start a server process per call, one after the other)."""

from __future__ import annotations

import asyncio
import time

from mcp import Client

from server import Sandbox
from tests.server.conftest import OpenOrchestrator, structured, wait_status

# Far longer than any test here may take: a run that waited for its lease would time the test out.
LEASE = 60.0
# The job in flight when the first instance stops sends its webhook to that instance's address, which is gone
# (a deployment puts one address before all instances): the next instance sees the job ended in the task list,
# waits this long for the webhook, then its step submits the job again.
GRACE = 1.0


async def test_a_run_stopped_midway_is_taken_by_the_next_engine_at_once(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    """Stopping an engine mid-production hands the run back; a fresh engine finishes it within seconds."""
    async with (
        open_orch(sandbox=standins, lease_seconds=LEASE, task_webhook_grace_seconds=GRACE) as first,
        Client(first.mcp) as c,
    ):
        args = {
            "project_id": "p",
            "brief": "x",
            "options": {"scenes": 2, "characters": 1, "auto_approve": True},
        }
        wid = structured(await c.call_tool("start_workflow", args))["workflow_id"]
        await wait_status(c, wid, where=lambda st: st["status"] == "running" and st["percent"] > 0)
        await first.stop_engine(drain_seconds=0.0)
        assert structured(await c.call_tool("get_status", {"workflow_id": wid}))["status"] != "completed"
    started = time.monotonic()
    async with (
        open_orch(sandbox=standins, lease_seconds=LEASE, task_webhook_grace_seconds=GRACE) as second,
        Client(second.mcp) as c,
    ):
        st = await wait_status(c, wid, limit=20)
    assert st["status"] == "completed"
    assert time.monotonic() - started < 20


async def test_an_entry_claimed_while_the_engine_stops_is_handed_back(open_orch: OpenOrchestrator) -> None:
    """A run queued while the engine's last read is in flight is not kept: another consumer gets it now."""
    async with open_orch(http=False, lease_seconds=LEASE) as orch:
        assert orch.engine is not None
        stopping = asyncio.create_task(orch.engine.stop(1.0))
        await asyncio.sleep(0.01)  # the stop has begun; the claim loop is in its blocking read
        await orch.store.enqueue("wf-0000000000000001", "start", "cid")
        await stopping
        assert orch.engine.held() == []
        tickets = await orch.store.claim("someone-else", 10, 100)
        # Claimed by the stopping engine's last read (then handed back) or never read: either way free now.
        assert [t.workflow_id for t in tickets] == ["wf-0000000000000001"]
