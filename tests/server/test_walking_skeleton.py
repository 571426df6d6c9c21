"""The thin slice end to end: tool -> queue -> graph -> stand-in -> Redis -> status."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from adapters import AnyRedis
from server import Orchestrator, Sandbox
from tests.server.conftest import error_text, structured, wait_status


async def test_preview_runs_to_completion_in_process(standins: Sandbox, orch: Orchestrator) -> None:
    """start_workflow returns at once; the engine runs the graph; get_status reports completion."""
    async with Client(orch.mcp) as client:
        start = structured(
            await client.call_tool(
                "start_workflow", {"project_id": "p1", "workflow": "preview", "brief": "a heist on the moon"}
            )
        )
        assert start["status"] == "queued"
        assert start["resources"]["state"] == f"workflow://{start['workflow_id']}/state"
        status = await wait_status(client, start["workflow_id"], limit=30)
    assert status["status"] == "completed", status
    assert status["percent"] == 100
    result = status["result"]
    assert isinstance(result, dict)
    assert "heist on the moon" in result["logline"]
    assert str(result["keyframe_url"]).endswith(".png")
    ts = standins.task_service
    assert ts.submits_by_key == {f"{start['workflow_id']}:keyframe": 1}
    events = [e["what"] for e in await orch.store.events(start["workflow_id"])]
    assert events[0] == "workflow.created"
    assert "step.finished" in events
    assert events[-1] == "workflow.completed"


async def test_same_idempotency_key_returns_same_workflow(orch: Orchestrator) -> None:
    """Repeating start_workflow with one idempotency key starts nothing new."""
    async with Client(orch.mcp) as client:
        args = {"project_id": "p1", "workflow": "preview", "idempotency_key": "once"}
        first = structured(await client.call_tool("start_workflow", args))
        again = structured(await client.call_tool("start_workflow", args))
    assert first["created"] is True
    assert again["created"] is False
    assert again["workflow_id"] == first["workflow_id"]


async def test_bad_arguments_name_the_field_and_write_nothing(
    orch: Orchestrator, redis_client: AnyRedis, key_prefix: str
) -> None:
    """Each wrong argument gets a tool error naming it; Redis holds no trace of the rejected calls."""
    before = [k async for k in redis_client.scan_iter(match=f"{key_prefix}*")]
    async with Client(orch.mcp) as client:
        cases = {
            "project_id": {"project_id": "no spaces allowed"},
            "workflow": {"project_id": "p1", "workflow": "blockbuster"},
            "brief": {"project_id": "p1", "workflow": "preview", "brief": "x" * 20_001},
            "idempotency_key": {"project_id": "p1", "workflow": "preview", "idempotency_key": "not ok!"},
        }
        for field, args in cases.items():
            text = error_text(await client.call_tool("start_workflow", args))
            assert "invalid_argument" in text
            assert repr(field) in text, text
        text = error_text(await client.call_tool("get_status", {"workflow_id": "wf-0000000000000000"}))
        assert "not_found" in text
        assert "unknown workflow" in text
        text = error_text(await client.call_tool("get_status", {"workflow_id": "../etc"}))
        assert "'workflow_id'" in text
        text = error_text(await client.call_tool("get_status", {"workflow_id": 42}))
        assert "workflow_id" in text
    after = [k async for k in redis_client.scan_iter(match=f"{key_prefix}*")]
    assert sorted(after) == sorted(before)


async def test_preview_over_stdio_subprocess(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """The real console entry point serves MCP over stdio and runs a workflow to completion."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "KEY_PREFIX": key_prefix,
        "LOG_FORMAT": "json",
        "TASK_POLL_SECONDS": "0.2",
        "SANDBOX_WEBHOOK_DELAY_SECONDS": "0.1",
    }
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--sandbox", "--data-dir", str(tmp_path / "redis")],
        env=env,
    )
    async with Client(params, mode="legacy") as client:
        start = structured(
            await client.call_tool(
                "start_workflow", {"project_id": "p2", "workflow": "preview", "brief": "rain"}
            )
        )
        status = await wait_status(client, start["workflow_id"], limit=30)
        assert status["status"] == "completed", status
        listed = structured(await client.call_tool("list_workflows", {"project_id": "p2"}))
        assert [w["workflow_id"] for w in listed["workflows"]] == [start["workflow_id"]]
