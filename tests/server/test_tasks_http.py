"""The Tasks extension over real HTTP, by a raw JSON-RPC client, across two instances sharing Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from server import Orchestrator
from tests.server.tasks_rpc import TASKS, RawTasksClient, RpcError
from tests.server.test_processes import Services, server, services

pytestmark = pytest.mark.slow

__all__ = ["services"]  # the stand-ins fixture, shared with the process tests


async def until(client: RawTasksClient, task_id: str, stop: set[str]) -> dict[str, Any]:
    """tasks/get until the status is one of `stop`, honouring pollIntervalMs up to a test-sized cap."""
    with anyio.fail_after(120):
        while True:
            task = await client.get(task_id)
            if task["status"] in stop:
                return task
            await anyio.sleep(min(task.get("pollIntervalMs", 500), 200) / 1000)


async def test_a_production_from_start_to_completed_through_tasks_alone_on_two_instances(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """Polled on one instance, answered through the other: start -> working -> input_required -> completed."""
    services.tasks.latency = 0.2
    env = {**services.env, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    async with (
        server("alpha", env, tmp_path) as a,
        server("beta", env, tmp_path) as b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        transcript: list[dict[str, Any]] = []
        poller = RawTasksClient(a.url, http, transcript=transcript)
        answerer = RawTasksClient(b.url, http, transcript=transcript)
        created = await poller.call_tool("start_workflow", {"project_id": "demo-project", "brief": "a map",
                                                             "options": {"scenes": 1, "characters": 1}})  # fmt: skip
        assert created["resultType"] == "task"
        assert created["status"] == "working"
        assert isinstance(created["ttlMs"], int)
        assert created["pollIntervalMs"] > 0
        task_id = created["taskId"]
        # durable before the reply: the other instance knows the task at once
        assert (await answerer.get(task_id))["taskId"] == task_id
        keys: list[str] = []
        while (task := await until(poller, task_id, {"input_required", "completed", "failed", "cancelled"}))[
            "status"
        ] == "input_required":
            responses = {}
            for key, req in task["inputRequests"].items():
                assert key not in keys, "an input request key was reused"
                keys.append(key)
                choice = req["params"]["requestedSchema"]["properties"]["choice"]
                responses[key] = {
                    "action": "accept",
                    "content": {"choice": choice.get("default", choice["enum"][0])},
                }
            assert (await answerer.update(task_id, responses))["resultType"] == "complete"
            # the answer is visible from the first instance right away (no longer asked)
            again = await poller.get(task_id)
            assert not set(again.get("inputRequests", {})) & set(responses)
    assert task["status"] == "completed", task
    assert len(keys) >= 2
    sc = task["result"]["structuredContent"]
    assert sc["outcome"] == "distributed"
    assert sorted(d["decision_id"] for d in sc["decisions"]) == sorted(keys)
    assert any(d["uris"] for d in sc["deliverables"])
    assert all(n == 1 for n in services.tasks.submits_by_key.values())
    if out := os.environ.get("MO_TASKS_TRANSCRIPT"):
        # scripts/tasks_transcript.py turns this into the README's example
        await anyio.Path(out).write_text(
            json.dumps({"alpha": a.url, "beta": b.url, "exchanges": transcript}, indent=1)
        )


async def test_raw_client_without_the_extension_and_other_errors(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """Over HTTP: no declaration -> a plain tool result and -32021; unknown task -> -32602; tasks/list -> -32601."""
    env = {**services.env, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    async with server("solo", env, tmp_path) as s, httpx.AsyncClient(timeout=30) as http:
        plain = RawTasksClient(s.url, http, declare_tasks=False)
        started = await plain.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"})
        assert "resultType" not in started or started["resultType"] == "complete"
        wid = started["structuredContent"]["workflow_id"]
        with pytest.raises(RpcError) as err:
            await plain.get(wid)
        assert err.value.code == -32021
        assert err.value.data == {"requiredCapabilities": {"extensions": {TASKS: {}}}}
        tasks = RawTasksClient(s.url, http)
        with pytest.raises(RpcError) as err:
            await tasks.get("wf-0000000000000000")
        assert err.value.code == -32602
        for method in ("tasks/list", "tasks/result"):
            with pytest.raises(RpcError) as err:
                await tasks.request(method, {"taskId": wid} if method == "tasks/result" else {})
            assert err.value.code == -32601
        assert (await tasks.cancel(wid))["resultType"] == "complete"


async def test_keys_scopes_and_roles_hold_for_tasks_over_http(front_door: Orchestrator) -> None:
    """Another project's task is not found; a read key cannot answer or cancel; the decider is recorded."""
    keys = front_door.keys
    assert keys is not None
    mine, _ = await keys.create("a-decider", ["proj-a"], "decide")
    reader, _ = await keys.create("a-reader", ["proj-a"], "read")
    other, _ = await keys.create("b-admin", ["proj-b"], "admin")
    async with httpx.AsyncClient(timeout=30) as http:
        a = RawTasksClient(front_door.http_url, http, bearer=mine)
        created = await a.call_tool("start_workflow", {"project_id": "proj-a", "workflow": "preview"})
        wid = created["taskId"]
        pending = [{"id": "d-1", "question": "Which cut?", "options": ["short", "long"], "kind": "choice",
                    "context": {}}]  # fmt: skip
        await front_door.store.update(
            wid, {"status": "waiting_decision", "pending": pending}, event="test.waiting"
        )
        b = RawTasksClient(front_door.http_url, http, bearer=other)
        answer = {"d-1": {"action": "accept", "content": {"choice": "long"}}}
        for call in (b.get(wid), b.update(wid, answer), b.cancel(wid)):
            with pytest.raises(RpcError) as err:
                await call
            assert err.value.code == -32602
            assert "not found" in err.value.message
        r = RawTasksClient(front_door.http_url, http, bearer=reader)
        assert (await r.get(wid))["status"] == "input_required"
        for call in (r.update(wid, answer), r.cancel(wid)):
            with pytest.raises(RpcError) as err:
                await call
            assert "permission_denied" in err.value.message
        assert await front_door.store.decisions(wid) == {}
        await a.update(wid, answer)
        with pytest.raises(RpcError) as err:
            await a.update(wid, {"d-1": {"action": "accept", "content": {"choice": "short"}}})
        assert "already taken" in err.value.message
    ledger = await front_door.store.decisions(wid)
    assert ledger["d-1"]["choice"] == "long"
    assert ledger["d-1"]["by"] == "a-decider"
