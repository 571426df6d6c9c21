"""Healing in seconds: a job the Task Service lost is found from its task list within a few polls of its
return and submitted again exactly once; a job that survived is never submitted twice."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, cast

import anyio
from mcp import Client

from adapters import AnyRedis, ServiceGuard, SharedBreakers, TaskServiceClient, WorkflowStore
from server import Orchestrator, Sandbox
from server.engine import Healing, JobLost, TaskLists
from server.telemetry import Metrics
from tests.server.conftest import OpenOrchestrator, structured, wait_status

SMALL: dict[str, Any] = {"scenes": 1, "characters": 1, "auto_approve": True}
QUICK: dict[str, Any] = {
    "task_poll_seconds": 0.3,
    "task_lost_confirm_seconds": 0.5,
    "breaker_probe_seconds": 0.3,
}


async def _jobs_in_flight(standins: Sandbox, at_least: int) -> None:
    with anyio.fail_after(30):
        while sum(t["status"] == "processing" for t in standins.task_service.tasks.values()) < at_least:
            await anyio.sleep(0.02)


async def _outage(standins: Sandbox, seconds: float, *, lose: bool) -> set[str]:
    """The Task Service down for `seconds` (every route 503), restarted without its tasks when `lose`; returns
    the step keys of the jobs it had in flight."""
    ts = standins.task_service
    in_flight = {
        str(t["metadata"].get("idempotency_key")) for t in ts.tasks.values() if t["status"] == "processing"
    }
    ts.outage = True
    if lose:
        ts.restart()
    await asyncio.sleep(seconds)
    ts.outage = False
    return in_flight


async def _productions(orch: Orchestrator, n: int) -> list[str]:
    async with Client(orch.mcp) as client:
        return [structured(await client.call_tool("start_workflow", {"project_id": f"p{i % 2}", "options": SMALL}))[
            "workflow_id"] for i in range(n)]  # fmt: skip


async def _ends(orch: Orchestrator, wids: list[str]) -> list[dict[str, Any]]:
    async with Client(orch.mcp) as client:
        return list(await asyncio.gather(*(wait_status(client, w, limit=90) for w in wids)))


async def test_jobs_lost_in_a_restart_are_submitted_again_once_soon_after_the_service_returns(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    """Six productions with jobs in flight; the Task Service goes down for 3 s and comes back without them:
    every production completes, the lost jobs' steps were submitted exactly twice, every other step once,
    and the losses were told by the listings (not the 5-minute grace)."""
    standins.task_service.latency = 0.5
    async with open_orch(sandbox=standins, **QUICK) as orch:
        wids = await _productions(orch, 6)
        await _jobs_in_flight(standins, 6)
        lost = await _outage(standins, 3.0, lose=True)
        back = time.monotonic()
        ends = await _ends(orch, wids)
        healed_in = time.monotonic() - back
    assert [e["status"] for e in ends] == ["completed"] * 6, [e["last_error"] for e in ends]
    submits = standins.task_service.submits_by_key
    assert {k: n for k, n in submits.items() if k not in lost} == dict.fromkeys(set(submits) - lost, 1)
    assert all(submits[k] <= 2 for k in lost)
    assert (
        sum(submits[k] == 2 for k in lost) >= len(lost) - 1
    )  # (a webhook on its way may have beaten the restart)
    assert healed_in < 60  # the 5-minute grace is not what healed them
    counted = (
        orch.metrics.registry.get_sample_value("mo_jobs_lost_total", {"reason": "lost_after_outage"}) or 0.0
    )
    assert counted >= len(lost) - 1
    events = [e["what"] for w in wids for e in await orch.store.events(w)]
    assert events.count("job.lost") == counted


async def test_jobs_that_survived_an_outage_are_never_submitted_twice(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    standins.task_service.latency = 1.0
    async with open_orch(sandbox=standins, **QUICK) as orch:
        wids = await _productions(orch, 4)
        await _jobs_in_flight(standins, 4)
        await _outage(standins, 2.0, lose=False)
        ends = await _ends(orch, wids)
    assert [e["status"] for e in ends] == ["completed"] * 4, [e["last_error"] for e in ends]
    assert set(standins.task_service.submits_by_key.values()) == {1}
    assert (
        orch.metrics.registry.get_sample_value("mo_jobs_lost_total", {"reason": "lost_after_outage"}) is None
    )


class _Pages:
    """A Task Service's task list, one page at a time, for the listing rules."""

    def __init__(self, rows: list[str], *, growing: bool = False) -> None:
        self.rows = rows
        self.growing = growing
        self.calls = 0

    async def list_page(self, project_id: str, *, page: int, limit: int = 100) -> dict[str, Any]:
        self.calls += 1
        total = len(self.rows) + (self.calls if self.growing else 0)  # a total that moves: not conclusive
        chunk = self.rows[(page - 1) * 2 : page * 2]
        return {"tasks": [{"task_id": t, "status": "processing"} for t in chunk],
                "pagination": {"page": page, "limit": 2, "total": total, "total_pages": -(-len(self.rows) // 2)}}  # fmt: skip


def _lists(pages: _Pages, reuse_seconds: float = 0.0) -> TaskLists:
    guard = ServiceGuard("task-service", SharedBreakers(None))
    return TaskLists(cast(TaskServiceClient, pages), guard, reuse_seconds=reuse_seconds)


NO_STORE = cast(WorkflowStore, None)  # the listing rules read no store


async def test_a_job_is_lost_after_two_complete_listings_far_enough_apart_and_never_on_incomplete_ones() -> (
    None
):
    healing = Healing(NO_STORE, _lists(_Pages(["a", "b", "c"])), Metrics(), confirm_seconds=0.05)
    loop = asyncio.get_running_loop()
    watch = healing.watch("p", "gone", loop.time())
    assert await watch.look() is None
    assert not watch.lost
    assert watch.next_look(loop.time() + 10) <= loop.time() + 0.05  # confirmed soon, not at the next poll
    assert await watch.look() is None
    assert watch.lost
    there = healing.watch("p", "c", loop.time())
    assert (await there.look() or {}).get("task_id") == "c"  # on the second page
    assert not there.lost
    moving = Healing(NO_STORE, _lists(_Pages(["a", "b", "c"], growing=True)), Metrics(), confirm_seconds=0.01)
    unsure = moving.watch("p", "gone", loop.time())
    for _ in range(5):
        assert await unsure.look() is None
    assert not unsure.lost


async def test_the_waits_of_a_project_share_one_listing_at_a_time() -> None:
    pages = _Pages(["a", "b", "c", "d"])
    lists = _lists(pages, reuse_seconds=5.0)
    loop = asyncio.get_running_loop()
    got = await asyncio.gather(*(lists.listing("p", after=loop.time()) for _ in range(20)))
    assert len({id(g) for g in got}) == 1
    assert (pages.calls, lists.listings) == (2, 1)  # two pages, once


async def test_of_two_runs_that_see_the_same_lost_job_exactly_one_submits_it_again(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """A zombie run and the run that took its workflow over both find job t1 lost: the compare-and-set on the
    step's entry lets one submit; the other waits for, and adopts, the job the first submitted."""
    store = WorkflowStore(redis_client, prefix=key_prefix)
    await store.remember_job("wf-1", "wf-1:scene.0", "t1", "n1")
    healing = Healing(store, _lists(_Pages([])), Metrics())
    sent: list[str] = []

    async def submit(nonce: str) -> str:
        sent.append(nonce)
        await asyncio.sleep(0.3)  # the submit takes a while: the other run waits for its id
        await store.remember_job("wf-1", "wf-1:scene.0", "t2", nonce)
        return "t2"

    lost = JobLost("t1", 2, "lost_after_outage")
    got = await asyncio.gather(
        *(
            healing.resubmit("wf-1", "wf-1:scene.0", lost, submit, None, nonce=secrets.token_hex(8))
            for _ in range(2)
        )
    )
    assert got == ["t2", "t2"]
    assert len(sent) == 1
    assert await store.job_for("wf-1", "wf-1:scene.0") == "t2"
    # a third run that noticed late adopts it too, without submitting
    assert (
        await healing.resubmit("wf-1", "wf-1:scene.0", lost, submit, None, nonce=secrets.token_hex(8)) == "t2"
    )
    assert len(sent) == 1


async def test_an_open_breaker_asks_the_health_route_and_closes_as_soon_as_the_service_is_back() -> None:
    """With the breaker open for its 30 s reset, a call waits only until the health route answers."""
    back = asyncio.Event()

    async def healthy() -> bool:
        return back.is_set()

    guard = ServiceGuard("task-service", SharedBreakers(None), fail_max=1, reset_timeout=30.0, probe=healthy,
                         probe_seconds=0.05)  # fmt: skip
    guard.breaker.open()
    calls: list[float] = []

    async def ping() -> str:
        calls.append(time.monotonic())
        return "pong"

    waiting = asyncio.create_task(guard.call(ping))
    await asyncio.sleep(0.3)
    assert not calls
    back.set()
    with anyio.fail_after(5):
        assert await waiting == "pong"
    assert guard.state == "closed"


async def test_every_waiter_of_a_shared_listing_hears_that_the_service_is_down() -> None:
    """Two jobs' waits share a listing held up by an open breaker: each one's workflow is told why it waits."""
    guard = ServiceGuard("task-service", SharedBreakers(None), fail_max=1, reset_timeout=0.3)
    guard.breaker.open()
    lists = TaskLists(cast(TaskServiceClient, _Pages(["a"])), guard, reuse_seconds=5.0)
    told: dict[str, list[str]] = {"w1": [], "w2": []}

    def hears(wid: str) -> Any:
        async def on_wait(reason: str) -> None:
            told[wid].append(reason)

        return on_wait

    loop = asyncio.get_running_loop()
    with anyio.fail_after(5):
        got = await asyncio.gather(*(lists.listing("p", after=loop.time(), on_wait=hears(w)) for w in told))
    assert got[0] is got[1]
    assert all(any("circuit open" in r for r in reasons) for reasons in told.values()), told
