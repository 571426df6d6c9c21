"""Completions, resources/list with the caller's workflows, and prompts: scoped to the caller's projects."""

from __future__ import annotations

import json

import mcp_types as types
import pytest
from mcp import Client

from server import Orchestrator, Sandbox
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, structured


async def _start(c: Client, project: str) -> str:
    start = await c.call_tool("start_workflow", {"project_id": project, "workflow": "preview"})
    return str(structured(start)["workflow_id"])


@pytest.mark.parametrize("transport", ["http", "http-legacy", "ws"])
async def test_completions_and_resources_are_limited_to_the_callers_projects(
    front_door: Orchestrator, transport: str
) -> None:
    """A key of project 'mine' completes and lists its workflows only, never another project's."""
    assert front_door.keys is not None
    key, _ = await front_door.keys.create("mine-key", ["mine"], "operate")
    async with Client(front_door.mcp) as admin:
        theirs = await _start(admin, "theirs")
    async with connect(front_door, transport, key) as c:
        caps = c.server_capabilities
        assert caps is not None
        assert caps.completions is not None
        ours = [await _start(c, "mine") for _ in range(3)]
        template = types.ResourceTemplateReference(type="ref/resource", uri="workflow://{workflow_id}/state")
        done = await c.complete(template, {"name": "workflow_id", "value": "wf-"})
        assert set(done.completion.values) == set(ours)
        assert theirs not in done.completion.values
        narrowed = await c.complete(template, {"name": "workflow_id", "value": ours[0][:12]})
        assert ours[0] in narrowed.completion.values
        hidden = await c.complete(
            types.ResourceTemplateReference(
                type="ref/resource", uri="workflow://{workflow_id}/checkpoints/{checkpoint_id}"
            ),
            {"name": "checkpoint_id", "value": ""},
            context_arguments={"workflow_id": theirs},
        )
        assert hidden.completion.values == []
        projects = await c.complete(
            types.PromptReference(type="ref/prompt", name="produce_movie"),
            {"name": "project_id", "value": ""},
        )
        assert projects.completion.values == ["mine"]
        listed = await c.list_resources()
        uris = {str(r.uri) for r in listed.resources}
        assert {f"workflow://{w}/state" for w in ours} <= uris
        assert f"workflow://{theirs}/state" not in uris
        assert "agents://registry" in uris


async def test_resources_list_pages(front_door: Orchestrator) -> None:
    """More workflows than one page: nextCursor leads to the rest, each listed once."""
    async with Client(front_door.mcp, mode="legacy") as c:
        wids = {await _start(c, "paged") for _ in range(55)}
        first = await c.list_resources()
        assert first.next_cursor is not None
        second = await c.list_resources(cursor=first.next_cursor)
        seen = [
            str(r.uri) for r in [*first.resources, *second.resources] if str(r.uri).startswith("workflow://")
        ]
        assert len(seen) == len(set(seen)) == 55
        assert {u.split("/")[2] for u in seen} == wids
        assert all(not str(r.uri).startswith("agents://") for r in second.resources)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prompts_lead_through_the_tools(front_door: Orchestrator, mode: str) -> None:
    """produce_movie and review_decisions are listed and name the tools to call."""
    async with Client(front_door.mcp, mode=mode) as c:
        names = {p.name for p in (await c.list_prompts()).prompts}
        assert {"produce_movie", "review_decisions"} <= names
        movie = await c.get_prompt("produce_movie", {"project_id": "p1", "brief": "a fox in the snow"})
        text = movie.messages[0].content.text  # type: ignore[union-attr]
        assert "start_workflow" in text
        assert "a fox in the snow" in text
        wid = await _start(c, "p1")
        review = await c.get_prompt("review_decisions", {"workflow_id": wid})
        assert "no open decision" in review.messages[0].content.text  # type: ignore[union-attr]


async def test_checkpoint_ids_complete_for_a_visible_workflow(
    open_orch: OpenOrchestrator, standins: Sandbox
) -> None:
    """checkpoint_id completes from the checkpoints of the workflow named in the context."""
    async with open_orch(sandbox=standins) as orch, Client(orch.mcp) as c:
        wid = await _start(c, "cp")
        st = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 30,
                                                         "until": ["completed"]}))  # fmt: skip
        assert st["status"] == "completed"
        template = types.ResourceTemplateReference(
            type="ref/resource", uri="workflow://{workflow_id}/checkpoints/{checkpoint_id}"
        )
        done = await c.complete(
            template, {"name": "checkpoint_id", "value": ""}, context_arguments={"workflow_id": wid}
        )
        listed = await c.read_resource(f"workflow://{wid}/checkpoints")
    ids = [cp["checkpoint_id"] for cp in json.loads(listed.contents[0].text)["checkpoints"]]  # type: ignore[union-attr]
    assert done.completion.values == ids
    assert ids
