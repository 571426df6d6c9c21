"""The production graphs on in-process fakes of the ports: every branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from adapters import AnyRedis, RedisCheckpointSaver
from graphs import (
    PHASE_TO_AUTO_MOVIE,
    build_character_development,
    build_episode_production,
    build_movie_production,
)
from tests.graphs.fakes import Crash, World


async def _drive(
    graph: Any, world: World, config: Any, first: Any, answers: dict[str, list[str]]
) -> dict[str, Any]:
    """Run to the end, answering each interrupt by its question's first word from `answers`."""
    asked: list[str] = []
    result = await graph.ainvoke(first, config, context=world.ports(), durability="sync")
    while "__interrupt__" in result:
        resume = {}
        for intr in result["__interrupt__"]:
            q = intr.value["question"]
            key = "concept" if "concept" in q else "story" if "story" in q else "final"
            asked.append(key)
            resume[intr.id] = answers[key].pop(0)
        result = await graph.ainvoke(Command(resume=resume), config, context=world.ports(), durability="sync")
    result["_asked"] = asked
    out: dict[str, Any] = result
    return out


def _config() -> Any:
    return {"configurable": {"thread_id": f"t-{uuid4()}"}, "recursion_limit": 200}


async def test_full_production_approved(tmp_path: Path) -> None:
    """Concept chosen, story passes the gate, final cut approved: the production is distributed."""
    world = World(tmp_path, options={"scenes": 4})
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    config = _config()
    first = await graph.ainvoke({"project_id": "p1", "brief": "a lighthouse keeper"},
                                config, context=world.ports())  # fmt: skip
    (decision,) = first["__interrupt__"]
    assert decision.value["options"][-1] == "more"
    chosen = decision.value["options"][1]
    out = await _drive(graph, world, config, Command(resume={decision.id: chosen}), {"final": ["approve"]})
    summary = out["summary"]
    assert summary["outcome"] == "distributed"
    assert summary["concept"] == chosen
    assert summary["scenes"] == 4
    assert summary["characters"] == 3
    assert set(summary["deliverables"]) >= {"concept", "story", "characters", "scene_images", "scene_clips",
                                             "edit_decision_list", "mix", "subtitles", "titles"}  # fmt: skip
    assert summary["distinct_agents"] >= 40
    phases = [p for p, _ in world.auto_movie.progress]
    assert phases == [
        PHASE_TO_AUTO_MOVIE[p] for p in ("story", "character", "visual", "audio", "scene", "post", "final")
    ]
    assert world.auto_movie.statuses == ["production", "completed"]
    assert out["_asked"] == ["final"]


async def test_more_concepts_then_revision_loop_then_pass(tmp_path: Path) -> None:
    """Asking for more concepts writes a new batch; low scores loop through revisions until the gate passes."""
    world = World(tmp_path, options={"scenes": 1})
    world.tasks.scores = [50, 60, 90]
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    config = _config()
    first = await graph.ainvoke({"project_id": "p1", "brief": "b"}, config,
                                context=world.ports())  # fmt: skip
    (d1,) = first["__interrupt__"]
    again = await graph.ainvoke(Command(resume={d1.id: "more"}), config, context=world.ports())
    (d2,) = again["__interrupt__"]
    assert "take 2." in d2.value["context"]["concepts"][0]["logline"]
    out = await _drive(
        graph, world, config, Command(resume={d2.id: d2.value["options"][0]}), {"final": ["approve"]}
    )
    assert out["summary"]["revisions"] == 2
    assert out["summary"]["story_score"] == 90
    assert out["story"]["revision"] == 2


async def test_gate_never_passes_escalates_to_a_human_who_rejects(tmp_path: Path) -> None:
    """After K revisions below the bar a human is asked; rejecting ends the production as rejected."""
    world = World(tmp_path, options={"max_revisions": 2})
    world.tasks.scores = [40]
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    config = _config()
    first = await graph.ainvoke({"project_id": "p1", "brief": "b"}, config,
                                context=world.ports())  # fmt: skip
    (d,) = first["__interrupt__"]
    result = await graph.ainvoke(Command(resume={d.id: d.value["options"][0]}), config, context=world.ports())
    (review,) = result["__interrupt__"]
    assert "after 2 revisions" in review.value["question"]
    assert review.value["options"] == ["approve", "revise", "reject"]
    done = await graph.ainvoke(Command(resume={review.id: "reject"}), config, context=world.ports())
    assert done["summary"]["outcome"] == "rejected"
    assert "scenes" not in done
    assert world.auto_movie.statuses == ["production"]


async def test_human_asks_one_more_revision_then_approves(tmp_path: Path) -> None:
    """A human can ask for one more revision; when it still fails, they are asked again and approve."""
    world = World(tmp_path, options={"max_revisions": 1, "scenes": 1})
    world.tasks.scores = [40]
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    config = _config()
    first = await graph.ainvoke({"project_id": "p1", "brief": "b"},
                                config, context=world.ports())  # fmt: skip
    (d,) = first["__interrupt__"]
    out = await _drive(graph, world, config, Command(resume={d.id: d.value["options"][0]}),
                       {"story": ["revise", "approve"], "final": ["reject"]})  # fmt: skip
    assert out["_asked"] == ["story", "story", "final"]
    assert out["summary"]["revisions"] == 2
    assert out["summary"]["outcome"] == "rejected at final approval"


async def test_failed_agent_routes_to_its_alternative(tmp_path: Path) -> None:
    """generate_video fails recoverably for every scene: the animatic builder makes the clips instead."""
    world = World(tmp_path, options={"scenes": 3, "auto_approve": True})
    world.tasks.failing_types = {"generate_video"}
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    out = await _drive(graph, world, _config(),
                       {"project_id": "p1", "brief": "b"}, {})  # fmt: skip
    assert out["summary"]["scene_clips_by"] == ["animatic_builder"]
    assert "scene_clips" in out["summary"]["deliverables"]
    failed = [
        (a, info)
        for a, outcome, info in world.agent_events
        if outcome == "failed" and a != "knowledge_keeper"
    ]
    assert [a for a, _ in failed] == ["video_generator"] * 3
    info = failed[0][1]
    assert (info["service"], info["operation"]) == ("task-service", "generate_video")
    assert info["reason"] == "'Context' object has no attribute 'started_at'"
    assert info["next"] == "trying alternative animatic_builder"
    assert info["step"].startswith("scene.")
    assert (
        sum(1 for a, o, d in world.agent_events if a == "animatic_builder" and "alternative" in d["detail"])
        == 3
    )


async def test_knowledge_falls_back_to_a_note_when_the_brain_lacks_the_tool(tmp_path: Path) -> None:
    """The deployed Brain has no store_knowledge: the story is kept as a note, and the event says why."""
    world = World(tmp_path, options={"scenes": 1, "characters": 1, "auto_approve": True})
    graph = build_movie_production().compile(checkpointer=InMemorySaver())
    out = await _drive(graph, world, _config(), {"project_id": "p1", "brief": "b"}, {})
    assert out["summary"]["outcome"] == "distributed"
    assert "knowledge_note" in out["agents_run"]
    (info,) = [i for a, o, i in world.agent_events if a == "knowledge_keeper" and o == "failed"]
    assert (info["service"], info["operation"], info["reason"]) == (
        "brain",
        "store_knowledge",
        "Unknown tool: store_knowledge",
    )
    assert info["next"] == "trying alternative knowledge_note"
    assert await anyio.Path(world.root / "story-knowledge.json").exists()


@pytest.mark.parametrize("scenes", [1, 12])
async def test_scene_fan_out(tmp_path: Path, scenes: int) -> None:
    """Scenes fan out with Send: 1 and 12 scenes each produce every scene exactly once."""
    world = World(tmp_path, options={"scenes": scenes})
    graph = build_episode_production().compile(checkpointer=InMemorySaver())
    out = await graph.ainvoke({"project_id": "p1", "brief": "b"}, _config(),
                              context=world.ports(), durability="sync")  # fmt: skip
    assert sorted(r["index"] for r in out["scene_results"]) == list(range(scenes))
    image_submits = [k for k in world.tasks.submits if k.endswith(":scene_image_generator")]
    assert len(image_submits) == scenes
    assert all(n == 1 for n in world.tasks.submits.values())


async def test_character_development_template(tmp_path: Path) -> None:
    """character_development creates, checks, designs and voices every character and stops there."""
    world = World(tmp_path, options={"characters": 5})
    world.auto_movie.missing = True  # a project Auto-Movie does not know: defaults are used
    graph = build_character_development().compile(checkpointer=InMemorySaver())
    out = await graph.ainvoke({"project_id": "p1", "brief": "b"}, _config(),
                              context=world.ports())  # fmt: skip
    assert len(out["character_results"]) == 5
    assert world.brain.calls["create_character"] == 5
    assert not out.get("scene_results")
    assert out["summary"]["outcome"] == "completed"


async def test_resume_after_crash_between_steps_redoes_nothing(
    tmp_path: Path, redis_client: AnyRedis, key_prefix: str
) -> None:
    """The process dies in the middle of the scenes; a new process resumes from Redis and submits nothing twice."""
    world = World(tmp_path, options={"scenes": 4, "auto_approve": True})
    world.tasks.crash_on = "scene.2"
    config = _config()
    graph = build_movie_production().compile(
        checkpointer=RedisCheckpointSaver(redis_client, prefix=key_prefix)
    )
    with pytest.raises(Crash):
        await graph.ainvoke({"project_id": "p1", "brief": "b"}, config, context=world.ports(),
                            durability="sync")  # fmt: skip
    submitted_before = dict(world.tasks.submits)
    assert any(k.startswith("scene.") for k in submitted_before)
    # a new process: new compiled graph, new saver object, same Redis
    fresh = build_movie_production().compile(
        checkpointer=RedisCheckpointSaver(redis_client, prefix=key_prefix)
    )
    state = await fresh.aget_state(config)
    assert "produce_scene" in state.next
    out = await fresh.ainvoke(None, config, context=world.ports(), durability="sync")
    assert out["summary"]["outcome"] == "distributed"
    assert out["summary"]["scenes"] == 4
    assert all(n == 1 for n in world.tasks.submits.values()), world.tasks.submits
    assert world.brain.calls["create_character"] == 3
