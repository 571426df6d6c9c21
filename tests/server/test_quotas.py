"""Quotas per project and per API key: a refused start names the quota, the use and when to retry, and writes
nothing; every end gives its place back exactly once; positions in a project's own queue."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from mcp import Client

from adapters import AnyRedis, Limits, QuotaStore, Status, Tenancy
from server import Sandbox
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, error_text, structured, wait_status


async def _keys(redis: AnyRedis, prefix: str) -> dict[str, Any]:
    """Every key of the test with its value (to show a refused call wrote nothing)."""
    out: dict[str, Any] = {}
    r: Any = redis
    async for key in r.scan_iter(match=f"{prefix}*", count=1000):
        kind = (await r.type(key)).decode()
        out[key.decode()] = (
            await r.hgetall(key) if kind == "hash" else await r.zrange(key, 0, -1, withscores=True)
            if kind == "zset" else await r.xrange(key) if kind == "stream" else await r.get(key) if kind == "string"
            else kind
        )  # fmt: skip
    return out


async def _start(client: Client, project: str = "p1", **args: Any) -> Any:
    return await client.call_tool("start_workflow", {"project_id": project, "workflow": "preview", **args})


async def test_a_project_over_its_in_flight_quota_is_refused_clearly_and_nothing_is_written(
    open_orch: OpenOrchestrator, redis_client: AnyRedis, key_prefix: str
) -> None:
    """Two productions in flight of a project with QUOTA_PROJECT_MAX_IN_FLIGHT=2: the third start is refused,
    naming the project, the quota, its use and when to retry; Redis is as it was; another project starts."""
    async with open_orch(engine=False, quota_project_max_in_flight=2) as orch, Client(orch.mcp) as client:
        first = structured(await _start(client))["workflow_id"]
        structured(await _start(client))
        before = await _keys(redis_client, key_prefix)
        refused = error_text(await _start(client, brief="one too many"))
        assert await _keys(redis_client, key_prefix) == before
        assert refused.endswith(
            "quota_exceeded: project 'p1' has 2 productions in flight and its quota max_in_flight is 2 "
            "(QUOTA_PROJECT_MAX_IN_FLIGHT); nothing was started. Retry when one of them completes, fails or is "
            "cancelled."
        ), refused
        structured(await _start(client, "p2"))
        await client.call_tool("cancel_workflow", {"workflow_id": first})
        structured(await _start(client))  # the cancelled one gave its place back
        metrics = orch.metrics.registry.get_sample_value(
            "mo_quota_refusals_total", {"scope": "project", "quota": "max_in_flight"}
        )
        assert metrics == 1.0


async def test_a_key_over_its_starts_per_minute_is_refused_with_the_time_to_wait_and_its_successor_shares_it(
    open_orch: OpenOrchestrator,
) -> None:
    """A key created with starts_per_minute=2 starts two (in two projects), the third is refused over HTTP
    with the seconds to wait; the key rotated, its successor counts against the same name."""
    async with open_orch(engine=False) as orch:
        key, _ = await orch.keys.create("bot", ["*"], "operate", starts_per_minute=2)
        async with connect(orch, "http", key) as client:
            structured(await _start(client, "p1"))
            structured(await _start(client, "p2"))
            refused = error_text(await _start(client, "p3"))
        assert (
            "quota_exceeded: key 'bot' started 2 productions in the last 60 s and its quota starts_per_minute is 2"
            in refused
        )
        assert "(set on the key: keys quota bot); nothing was started. Retry in " in refused
        wait = float(refused.rsplit("Retry in ", 1)[1].split(" s")[0])
        assert 0 < wait <= 60
        successor, _, _ = await orch.keys.rotate("bot")
        async with connect(orch, "http", successor) as client:
            assert "quota_exceeded: key 'bot'" in error_text(await _start(client, "p4"))
        # the project's own quotas and other keys are not touched by it
        admin, _ = await orch.keys.create("admin", ["*"], "admin")
        async with connect(orch, "http", admin) as client:
            structured(await _start(client, "p3"))


async def test_a_repeated_start_with_its_idempotency_key_is_never_refused_or_counted(
    open_orch: OpenOrchestrator,
) -> None:
    async with open_orch(engine=False, quota_project_max_in_flight=1) as orch, Client(orch.mcp) as client:
        first = structured(await _start(client, idempotency_key="once"))
        again = structured(await _start(client, idempotency_key="once"))
        assert (again["workflow_id"], again["created"]) == (first["workflow_id"], False)
        assert orch.service.quotas is not None
        (use,) = await orch.service.quotas.usage(["p1"], [])
        assert use.in_flight == 1


async def test_queued_workflows_know_their_place_in_their_own_projects_queue(
    open_orch: OpenOrchestrator,
) -> None:
    """Three of p1 and one of p2 queued: p1's are 1, 2, 3 of 3 and p2's is 1 of 1, whatever came between;
    once the first of p1 is cancelled the others move up; a running or finished one has no place."""
    async with open_orch(engine=False) as orch, Client(orch.mcp) as client:
        p1 = [structured(await _start(client, "p1"))["workflow_id"]]
        p2 = structured(await _start(client, "p2"))["workflow_id"]
        p1 += [structured(await _start(client, "p1"))["workflow_id"] for _ in range(2)]

        async def place(wid: str) -> tuple[Any, Any]:
            st = structured(await client.call_tool("get_status", {"workflow_id": wid}))
            return st["queue_position"], st["queued_in_project"]

        assert [await place(w) for w in p1] == [(1, 3), (2, 3), (3, 3)]
        assert await place(p2) == (1, 1)
        await client.call_tool("cancel_workflow", {"workflow_id": p1[0]})
        assert [await place(w) for w in p1] == [(None, None), (1, 2), (2, 2)]
        await orch.store.update(p1[1], {"status": Status.RUNNING}, event="run.started")
        assert [await place(w) for w in p1[1:]] == [(None, None), (1, 1)]


async def test_every_end_gives_the_place_back_once_and_retry_takes_one_again(
    open_orch: OpenOrchestrator,
) -> None:
    """A workflow that fails gives its place back; 20 concurrent releases of it move the count once;
    retry_step needs a place again (refused while the project is full, as max_in_flight, not as a start)."""
    async with open_orch(engine=False, quota_project_max_in_flight=1) as orch, Client(orch.mcp) as client:
        quotas = orch.service.quotas
        assert quotas is not None
        wid = structured(await _start(client))["workflow_id"]
        await orch.store.update(wid, {"status": Status.FAILED, "last_error": "boom"}, event="workflow.failed")
        assert [r for r in await asyncio.gather(*(quotas.release(wid) for _ in range(20))) if r] == []
        assert (await quotas.usage(["p1"], []))[0].in_flight == 0
        assert await quotas.top() == []
        other = structured(await _start(client))["workflow_id"]
        refused = error_text(await client.call_tool("retry_step", {"workflow_id": wid}))
        assert "quota max_in_flight is 1 (QUOTA_PROJECT_MAX_IN_FLIGHT); nothing was retried" in refused
        still = await orch.store.get(wid)
        assert still is not None
        assert still.status == Status.FAILED
        await client.call_tool("cancel_workflow", {"workflow_id": other})
        st = structured(await client.call_tool("retry_step", {"workflow_id": wid}))
        assert st["status"] == "queued"
        assert (await quotas.usage(["p1"], []))[0].in_flight == 1


async def test_a_reservation_left_by_a_crash_is_swept_and_a_live_one_kept(
    open_orch: OpenOrchestrator, redis_client: AnyRedis, key_prefix: str
) -> None:
    """A reservation whose workflow was never created (the process died between the two) is released by the
    sweeper; one whose workflow is still queued stays."""
    async with open_orch(engine=False, quota_project_max_in_flight=2) as orch, Client(orch.mcp) as client:
        live = structured(await _start(client))["workflow_id"]
        quotas = QuotaStore(redis_client, key_prefix)
        await quotas.reserve("wf-00000000deadbeef", Tenancy("p1", Limits(2)), counts_as_start=True)
        assert "quota_exceeded" in error_text(await _start(client))
        assert await quotas.sweep("me", orch.store.statuses, older_than=0) == 1
        assert await quotas.sweep("me", orch.store.statuses, older_than=0) == 0  # the sweeper's lock
        assert (await quotas.usage(["p1"], []))[0].in_flight == 1
        assert structured(await client.call_tool("get_status", {"workflow_id": live}))["queue_position"] == 1


async def test_a_completed_production_gives_its_place_back_and_metrics_show_who_has_what(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    async with open_orch(sandbox=standins) as orch, Client(orch.mcp) as client:
        key, _ = await orch.keys.create("studio", ["*"], "operate", max_in_flight=5)
        waiting = structured(await client.call_tool("start_workflow", {"project_id": "held",
                                                                        "options": {"auto_approve": False}}))  # fmt: skip
        async with connect(orch, "http", key) as mine:
            wid = structured(await _start(mine, "p1"))["workflow_id"]
            assert (await wait_status(mine, wid, limit=30))["status"] == "completed"
        await wait_status(client, waiting["workflow_id"], ["waiting_decision"], limit=30)
        async with httpx.AsyncClient(base_url=orch.http_url) as http:
            metrics = (await http.get("/metrics")).text
            board = (await http.get("/board/api/quotas", params={"project": ["held", "p1"]},
                                    headers={"Authorization": f"Bearer {key}"})).json()  # fmt: skip
    assert 'mo_tenant_in_flight{scope="project",tenant="held"} 1.0' in metrics
    assert 'tenant="p1"' not in metrics
    assert {(q["scope"], q["tenant"], q["in_flight"], q["max_in_flight"]) for q in board["quotas"]} == {
        ("project", "held", 1, 250),
        ("project", "p1", 0, 250),
        ("key", "studio", 0, 5),
    }


@pytest.mark.slow
def test_keys_are_created_with_quotas_and_their_quotas_changed_from_the_command_line(
    redis_url: str, key_prefix: str
) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "LOG_LEVEL": "warning"}

    def cli(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "server", "keys", *args], env=env, check=True,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        return json.loads(out.stdout)

    made = cli("create", "bot", "--role", "operate", "--max-in-flight", "3")
    assert (made["max_in_flight"], made["starts_per_minute"]) == (3, None)
    assert cli("quota", "bot", "--starts-per-minute", "10")["changed"] == [made["key_id"]]
    (listed,) = cli("list")
    assert (listed["max_in_flight"], listed["starts_per_minute"]) == (3, 10)
    cli("quota", "bot", "--max-in-flight", "default")
    (listed,) = cli("list")
    assert (listed["max_in_flight"], listed["starts_per_minute"]) == (None, 10)
