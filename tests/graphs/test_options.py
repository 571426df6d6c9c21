"""The options contract of every workflow, the lenient read of stored options, and budgets inside the graph."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from structlog.testing import capture_logs

from adapters import BudgetExceededError, OptionError
from graphs import (
    WORKFLOWS,
    BudgetLimits,
    Counted,
    MovieProductionOptions,
    ProductionOptions,
    WorkflowOptions,
    build_episode_production,
    read_options,
    repaired,
    validate_options,
)
from tests.graphs.fakes import World


def test_every_workflow_has_a_closed_options_model() -> None:
    """Each workflow names a model that refuses unknown keys and accepts its own defaults."""
    assert set(WORKFLOWS) == {"movie_production", "character_development", "episode_production", "preview",
                              "diagnostic_linear"}  # fmt: skip
    for name, spec in WORKFLOWS.items():
        assert issubclass(spec.options, WorkflowOptions)
        assert spec.options.model_config.get("extra") == "forbid"
        assert validate_options(name, spec.options, None) == spec.options()
        with pytest.raises(OptionError) as err:
            validate_options(name, spec.options, {"bogus": 1})
        assert err.value.option == "bogus"
        # every option a workflow takes is one the shared production nodes know how to read
        assert set(spec.options.model_fields) <= set(ProductionOptions.model_fields)


@pytest.mark.parametrize(
    ("options", "option", "allowed"),
    [
        ({"scenes": 10**9}, "scenes", "an integer from 1 to 24"),
        ({"scenes": -1}, "scenes", "an integer from 1 to 24"),
        ({"scenes": "many"}, "scenes", "an integer from 1 to 24"),
        ({"characters": 10**6}, "characters", "an integer from 1 to 10"),
        ({"concept_count": 10**6}, "concept_count", "an integer from 1 to 5"),
        ({"max_revisions": 10**6}, "max_revisions", "an integer from 0 to 5"),
        ({"story_threshold": "high"}, "story_threshold", "a number from 0 to 100"),
        ({"auto_approve": "yes please"}, "auto_approve", "true or false"),
        ({"max_step_seconds": 0}, "max_step_seconds", "a number above 0 and at most 86400"),
        ({"genre": "western"}, "genre", "one of ['action'"),
        ({"scenes": "6"}, "scenes", "an integer from 1 to 24"),
        ({"auto_approve": 1}, "auto_approve", "true or false"),
    ],
)
def test_a_refusal_names_the_option_the_value_and_what_is_allowed(
    options: dict[str, Any], option: str, allowed: str
) -> None:
    """The nine sets of the issue (and more) are refused with the option, its value and the range; the door is
    strict (6, not "6"; true, not 1)."""
    with pytest.raises(OptionError) as err:
        validate_options("movie_production", MovieProductionOptions, options)
    assert err.value.option == option
    assert err.value.value == options[option]
    assert allowed in err.value.allowed
    assert str(err.value).startswith(f"{option}={options[option]!r} is not accepted by movie_production")


def test_stored_options_are_read_leniently() -> None:
    """Old records: huge numbers clamped, unreadable values defaulted, unknown keys dropped; valid ones as they are."""
    old = {"scenes": 10**9, "characters": -5, "story_threshold": "high", "bogus": 1, "auto_approve": True}
    opts = read_options(ProductionOptions, old)
    assert (opts.scenes, opts.characters, opts.story_threshold, opts.auto_approve) == (24, 1, 70.0, True)
    assert repaired(ProductionOptions, old) == {"scenes": (10**9, 24), "characters": (-5, 1),
                                                "story_threshold": ("high", 70.0), "bogus": (1, "dropped")}  # fmt: skip
    # stored options are read laxly: a string of digits is the number it spells
    assert read_options(ProductionOptions, {"scenes": "7"}).scenes == 7
    fine = {"scenes": 4, "auto_approve": True}
    assert read_options(ProductionOptions, fine).model_dump(exclude_unset=True) == fine
    assert repaired(ProductionOptions, fine) == {}
    # a run's options are the repaired ones, and the run says what it changed
    with capture_logs() as logs:
        first = WORKFLOWS["episode_production"].run_options(old)
    assert (first.scenes, first.characters, first.auto_approve) == (24, 1, True)
    (line,) = [e for e in logs if e["event"] == "options.repaired"]
    assert line["changes"]["scenes"] == ["1000000000", "24"]


@dataclasses.dataclass(frozen=True)
class _Budget:
    limits: BudgetLimits
    charged: list[str] = dataclasses.field(default_factory=list)

    async def charge(self, budget: Counted, amount: int = 1, *, where: str = "") -> None:
        if budget == "agent_executions" and len(self.charged) >= self.limits.agent_executions:
            raise BudgetExceededError(budget, self.limits.agent_executions, len(self.charged) + amount, where)
        self.charged.append(where)

    def check_width(self, width: int, *, where: str) -> None:
        if width > self.limits.fan_out:
            raise BudgetExceededError("fan_out", self.limits.fan_out, width, where)


def _config() -> Any:
    return {"configurable": {"thread_id": f"t-{uuid4()}"}, "recursion_limit": 200}


async def test_the_graph_charges_every_agent_execution_and_checks_its_fan_out(tmp_path: Path) -> None:
    """run_agent charges before each execution; the breakdown refuses a fan-out over the budget before building it."""
    world = World(tmp_path, options={"scenes": 1})
    graph = build_episode_production().compile(checkpointer=InMemorySaver())
    budget = _Budget(BudgetLimits(agent_executions=5))
    with pytest.raises(BudgetExceededError) as err:
        await graph.ainvoke({"project_id": "p1", "brief": "b"}, _config(),
                            context=dataclasses.replace(world.ports(), budget=budget))  # fmt: skip
    assert (err.value.budget, err.value.limit, err.value.reached) == ("agent_executions", 5, 6)
    assert len(budget.charged) == 5

    narrow = _Budget(BudgetLimits(fan_out=4))
    world.options = {"scenes": 5}
    with pytest.raises(BudgetExceededError) as err:
        await graph.ainvoke({"project_id": "p1", "brief": "b"}, _config(),
                            context=dataclasses.replace(world.ports(), budget=narrow))  # fmt: skip
    assert (err.value.budget, err.value.reached, err.value.where) == ("fan_out", 5, "breakdown")
    assert not any(where.startswith("scene.") for where in narrow.charged)
