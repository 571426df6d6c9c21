"""Workflow options at the door: refused by name with what is allowed, shown in the schema, honoured to the limit."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from adapters import AnyRedis
from graphs import WORKFLOWS
from server import Orchestrator, Sandbox
from tests.server.conftest import error_text, structured, wait_status

# The nine option sets of issue 13, each with the option its refusal must name.
IMPOSSIBLE: list[tuple[dict[str, Any], str]] = [
    ({"scenes": 10**9}, "scenes"),
    ({"scenes": -1}, "scenes"),
    ({"scenes": "many"}, "scenes"),
    ({"characters": 10**6}, "characters"),
    ({"concept_count": 10**6}, "concept_count"),
    ({"max_revisions": 10**6}, "max_revisions"),
    ({"story_threshold": "high"}, "story_threshold"),
    ({"auto_approve": "yes please"}, "auto_approve"),
    ({"bogus": 1}, "bogus"),
]

LARGEST = {"scenes": 24, "characters": 10, "concept_count": 5, "max_revisions": 5, "story_threshold": 100,
           "auto_approve": True}  # fmt: skip


async def _keys(redis_client: AnyRedis, key_prefix: str) -> list[Any]:
    return sorted([k async for k in redis_client.scan_iter(match=f"{key_prefix}*")])


async def test_the_nine_impossible_option_sets_are_refused_and_write_nothing(
    orch: Orchestrator, redis_client: AnyRedis, key_prefix: str
) -> None:
    """Each set is a tool error naming the option, the value and the allowed range; Redis is untouched."""
    before = await _keys(redis_client, key_prefix)
    queued = await orch.store.queue_depth()
    async with Client(orch.mcp) as c:
        for options, name in IMPOSSIBLE:
            text = error_text(await c.call_tool("start_workflow", {"project_id": "p1", "options": options}))
            assert "invalid_argument" in text, text
            assert f"'options.{name}'" in text, text
            assert repr(options[name])[:20] in text, text
            assert "allowed" in text or "options are" in text, text
        # a workflow refuses another workflow's options, listing its own
        text = error_text(await c.call_tool("start_workflow", {"project_id": "p1", "workflow": "preview",
                                                               "options": {"scenes": 3}}))  # fmt: skip
        assert "'options.scenes'" in text
        assert "max_step_seconds" in text
        # asking for more than the deployment's budget is refused with the ceiling
        text = error_text(await c.call_tool("start_workflow", {"project_id": "p1",
                                                               "options": {"max_agent_executions": 99_999}}))  # fmt: skip
        assert "'options.max_agent_executions'" in text
        assert str(orch.settings.budget_agent_executions) in text
    assert await _keys(redis_client, key_prefix) == before
    assert await orch.store.queue_depth() == queued


def test_refusal_messages_read_as_documented() -> None:
    """The exact words a client sees for three of the refusals (README's table quotes them)."""
    from adapters import OptionError
    from graphs import MovieProductionOptions, validate_options

    seen = []
    for options in ({"scenes": 10**9}, {"auto_approve": "yes please"}, {"bogus": 1}):
        with pytest.raises(OptionError) as err:
            validate_options("movie_production", MovieProductionOptions, options)
        seen.append(str(err.value))
    assert (
        seen[0] == "scenes=1000000000 is not accepted by movie_production; allowed: an integer from 1 to 24"
    )
    assert seen[1] == "auto_approve='yes please' is not accepted by movie_production; allowed: true or false"
    assert seen[2].startswith(
        "movie_production has no option 'bogus' (given 1); its options are auto_approve, "
    )


async def test_tools_list_shows_each_workflows_options_with_ranges(orch: Orchestrator) -> None:
    """start_workflow's input schema has one object per workflow, inlined, closed, with minimum/maximum."""
    async with Client(orch.mcp) as c:
        tool = next(t for t in (await c.list_tools()).tools if t.name == "start_workflow")
    schema = tool.input_schema
    assert "$defs" not in schema
    assert set(schema["properties"]["workflow"]["enum"]) == set(WORKFLOWS)
    branches = {b["title"]: b for b in schema["properties"]["options"]["anyOf"] if b.get("type") == "object"}
    assert set(branches) == {f"{name} options" for name in WORKFLOWS}
    for name, spec in WORKFLOWS.items():
        branch = branches[f"{name} options"]
        assert branch["additionalProperties"] is False
        assert set(branch["properties"]) == set(spec.options.model_fields)
    movie = branches["movie_production options"]["properties"]
    assert (movie["scenes"]["minimum"], movie["scenes"]["maximum"]) == (1, 24)
    assert (movie["characters"]["minimum"], movie["characters"]["maximum"]) == (1, 10)
    assert movie["auto_approve"]["type"] == "boolean"
    assert "1000 agent executions" in (tool.description or "")


async def test_the_largest_allowed_production_completes(standins: Sandbox, orch: Orchestrator) -> None:
    """Every option at its maximum (24 scenes, 10 characters, 5 revisions forced by a threshold of 100)."""
    standins.task_service.latency = 0.0
    async with Client(orch.mcp) as c:
        started = structured(await c.call_tool("start_workflow", {"project_id": "big", "brief": "a long night",
                                                                  "options": LARGEST}))  # fmt: skip
        done = await wait_status(c, started["workflow_id"], limit=120)
    assert done["status"] == "completed", done["last_error"]
    result = done["result"]
    assert (result["scenes"], result["characters"], result["revisions"]) == (24, 10, 5)
    assert result["agent_executions"] < orch.settings.budget_agent_executions
    assert result["outside_calls"]["task-service"] < orch.settings.budget_outside_jobs


async def test_a_workflow_stored_with_old_style_options_keeps_running(orch: Orchestrator) -> None:
    """A record written before the contract (a huge number, strings, an unknown key) runs with repaired options."""
    old = {"scenes": "many", "characters": -4, "story_threshold": 10**9, "bogus": True, "auto_approve": True}
    rec, _ = await orch.store.create(project_id="legacy", workflow="episode_production", brief="old", options=old,
                                     created_by="before-13", correlation_id="c")  # fmt: skip
    async with Client(orch.mcp) as c:
        done = await wait_status(c, rec.id, limit=120)
    assert done["status"] == "completed", done["last_error"]
    # unreadable scenes take the default, numbers are clamped into bounds (a threshold of 100 forces every
    # revision, then auto_approve approves), the unknown key is dropped
    assert (done["result"]["scenes"], done["result"]["characters"], done["result"]["revisions"]) == (6, 1, 2)
