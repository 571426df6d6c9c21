"""The agent registry: 50+ validated agents, routing by capability and availability."""

from __future__ import annotations

import pytest

from graphs import Agent, Registry, registry


def test_registry_has_fifty_valid_agents_in_every_phase() -> None:
    """At least 50 agents load and validate; every phase of the platform has agents."""
    reg = registry()
    assert len(reg) >= 50
    assert {a.phase for a in reg.agents.values()} == {
        "story",
        "character",
        "visual",
        "audio",
        "scene",
        "post",
        "final",
    }
    for name in ("series_creator", "story_architect", "episode_breakdown", "dialogue_writer", "character_creator",
                 "character_designer", "voice_creator", "arc_manager", "concept_artist", "environment_designer",
                 "image_generation", "storyboard_artist", "video_editor", "audio_mixer", "colorist",
                 "subtitle_generator", "quality_control", "distribution"):  # fmt: skip
        assert name in reg.agents


def test_pick_skips_agents_whose_service_is_down() -> None:
    """Routing by capability prefers an available agent; with the Task Service down the local one is chosen."""
    reg = registry()
    assert reg.pick("scene.video").id == "video_generator"
    assert reg.pick("scene.video", unavailable=lambda s: s == "task-service").id == "animatic_builder"
    chain = reg.chain("video_generator", unavailable=lambda s: s == "task-service")
    assert [a.id for a in chain] == ["animatic_builder", "video_generator"]


def _agent(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "a_one", "name": "A", "phase": "story", "capabilities": ["x"], "inputs": [], "outputs": ["o"],
        "operation": {"kind": "local", "name": "themes"}, "timeout": 10,
        "retry": {"max_attempts": 1, "initial_interval": 1},
    }  # fmt: skip
    return base | kw


@pytest.mark.parametrize(
    ("agents", "match"),
    [
        ([_agent(), _agent()], "appears twice"),
        ([_agent(alternatives=["ghost"])], "unknown alternative"),
        ([_agent(alternatives=["b_two"]), _agent(id="b_two", capabilities=["y"])], "shares none"),
        ([_agent(operation={"kind": "local", "name": "nope"})], "does not exist"),
    ],
)
def test_invalid_registries_are_refused(agents: list[dict[str, object]], match: str) -> None:
    """Duplicates, unknown or unrelated alternatives and missing transforms fail validation."""
    with pytest.raises(ValueError, match=match):
        Registry([Agent.model_validate(a) for a in agents], local_ops={"themes"})


def test_operations_are_checked_against_the_services() -> None:
    """A task type the Task Service does not accept is refused at load."""
    with pytest.raises(ValueError, match="does not exist"):
        Agent.model_validate(_agent(operation={"kind": "task", "name": "render_animation"}))
