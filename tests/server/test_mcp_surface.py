"""Every tool and resource through the mcp SDK's client: in memory, over Streamable HTTP, over WebSocket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server import Orchestrator
from tests.server.clients import TRANSPORTS, connect
from tests.server.conftest import error_text, structured, wait_status


def _text(result: Any) -> Any:
    return json.loads(result.contents[0].text)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_tool_and_resource(served: tuple[Orchestrator, str], transport: str) -> None:
    """Start, status, decide, list, pause, resume, cancel, retry, fork, agents and all six resources."""
    orch, key = served
    async with connect(orch, transport, key) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert tools == {"start_workflow", "get_status", "submit_decision", "list_workflows", "pause_workflow",
                         "resume_workflow", "cancel_workflow", "retry_step", "fork_workflow", "list_agents"}  # fmt: skip
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        assert {"workflow://{workflow_id}/state", "workflow://{workflow_id}/decisions",
                "workflow://{workflow_id}/events", "workflow://{workflow_id}/checkpoints",
                "workflow://{workflow_id}/checkpoints/{checkpoint_id}"} <= templates  # fmt: skip
        project = f"proj-{transport}"
        start = structured(await c.call_tool("start_workflow", {"project_id": project, "brief": "a fox",
                                                                "options": {"scenes": 1, "characters": 1}}))  # fmt: skip
        wid = start["workflow_id"]
        st = await wait_status(c, wid, {"waiting_decision"})
        (decision,) = st["pending_decisions"]
        assert decision["options"][-1] == "more"
        # a wrong choice is refused and names the field
        assert "'choice'" in error_text(await c.call_tool(
            "submit_decision", {"workflow_id": wid, "decision_id": decision["id"], "choice": "nope"}))  # fmt: skip
        pending = _text(await c.read_resource(f"workflow://{wid}/decisions"))
        assert pending["pending"][0]["id"] == decision["id"]
        ok = structured(await c.call_tool("submit_decision", {"workflow_id": wid, "decision_id": decision["id"],
                                                              "choice": decision["options"][0], "comment": "nice"}))  # fmt: skip
        assert ok["accepted"] is True
        again = structured(await c.call_tool("submit_decision", {"workflow_id": wid, "decision_id": decision["id"],
                                                                 "choice": decision["options"][0]}))  # fmt: skip
        assert again["reason"] == "already recorded with this choice"
        clash = error_text(await c.call_tool("submit_decision", {"workflow_id": wid, "decision_id": decision["id"],
                                                                 "choice": decision["options"][1]}))  # fmt: skip
        assert "conflict" in clash
        assert decision["options"][0] in clash
        st = await wait_status(c, wid, {"waiting_decision"})
        assert "final cut" in st["pending_decisions"][0]["question"]
        # pause while waiting, resume, then cancel instead of approving
        paused = structured(await c.call_tool("pause_workflow", {"workflow_id": wid}))
        assert paused["status"] == "paused"
        assert structured(await c.call_tool("resume_workflow", {"workflow_id": wid}))["status"] == "queued"
        st = await wait_status(c, wid, {"waiting_decision"})
        state = _text(await c.read_resource(f"workflow://{wid}/state"))
        assert state["workflow_id"] == wid
        events = _text(await c.read_resource(f"workflow://{wid}/events"))
        whats = [e["what"] for e in events]
        assert {"workflow.created", "decision.requested", "decision.submitted", "workflow.paused",
                "workflow.resumed"} <= set(whats)  # fmt: skip
        submitted = next(e for e in events if e["what"] == "decision.submitted")
        assert submitted["who"] == ("local" if transport.startswith("memory") else "tester")
        assert submitted["correlation_id"]
        checkpoints = _text(await c.read_resource(f"workflow://{wid}/checkpoints"))["checkpoints"]
        assert len(checkpoints) > 5
        early = checkpoints[-3]["checkpoint_id"]
        detail = _text(await c.read_resource(f"workflow://{wid}/checkpoints/{early}"))
        assert detail["checkpoint_id"] == early
        fork = structured(await c.call_tool("fork_workflow", {"workflow_id": wid, "checkpoint_id": early}))
        assert fork["workflow_id"] != wid
        cancelled = structured(await c.call_tool("cancel_workflow", {"workflow_id": wid}))
        assert cancelled["status"] == "cancelled"
        assert "conflict" in error_text(await c.call_tool("retry_step", {"workflow_id": wid}))
        listed = structured(await c.call_tool("list_workflows", {"project_id": project}))
        assert {w["workflow_id"] for w in listed["workflows"]} == {wid, fork["workflow_id"]}
        only_cancelled = structured(
            await c.call_tool("list_workflows", {"project_id": project, "status": "cancelled"})
        )
        assert [w["workflow_id"] for w in only_cancelled["workflows"]] == [wid]
        agents = structured(await c.call_tool("list_agents", {"phase": "scene"}))["agents"]
        assert {a["id"] for a in agents} >= {"video_generator", "animatic_builder"}
        registry = _text(await c.read_resource("agents://registry"))
        assert len(registry["agents"]) >= 50
        fork_status = await wait_status(c, fork["workflow_id"], {"waiting_decision", "completed", "failed"})
        assert fork_status["forked_from"] == f"{wid}@{early}"
        assert fork_status["status"] != "failed", fork_status["last_error"]
        await c.call_tool("cancel_workflow", {"workflow_id": fork["workflow_id"]})


async def test_unknown_resources_are_not_found(served: tuple[Orchestrator, str]) -> None:
    """Reading a resource of an unknown workflow or checkpoint is a clear not-found error."""
    orch, _ = served
    async with Client(orch.mcp) as c:
        with pytest.raises(MCPError, match="unknown workflow"):
            await c.read_resource("workflow://wf-0000000000000000/state")
        start = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))
        with pytest.raises(MCPError, match="unknown checkpoint"):
            await c.read_resource(
                f"workflow://{start['workflow_id']}/checkpoints/00000000-0000-0000-0000-000000000000"
            )
        with pytest.raises(MCPError, match="checkpoint_id"):
            await c.read_resource(f"workflow://{start['workflow_id']}/checkpoints/not-an-id!")
