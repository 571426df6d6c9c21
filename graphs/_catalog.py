"""The workflows the orchestrator can start, by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from langgraph.graph import StateGraph

from graphs import _options as opt
from graphs._diagnostic import build_diagnostic_linear
from graphs._movie import build_character_development, build_episode_production, build_movie_production
from graphs._preview import build_preview

__all__ = ["WORKFLOWS", "WorkflowSpec"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkflowSpec:
    """A startable workflow: its graph builder, its options contract and how to make its first input."""

    name: str
    description: str
    build: Callable[[], StateGraph[Any, Any, Any, Any]]
    options: type[opt.WorkflowOptions]

    def initial_input(self, project_id: str, brief: str) -> dict[str, Any]:
        """The graph's input for a new run (the options travel in the run's context, `run_options`)."""
        return {"project_id": project_id, "brief": brief}

    def run_options(self, stored: Mapping[str, Any] | None) -> opt.ProductionOptions:
        """A workflow's stored options, parsed once for a run: read leniently (a record written before the
        contract keeps running, and the repair is logged), with the defaults of the options it does not take.
        """
        typed = opt.read_options(self.options, stored)
        changed = opt.repaired(self.options, stored)
        if changed:
            log.warning("options.repaired", workflow=self.name,
                        changes={k: [repr(old)[:60], repr(new)[:60]] for k, (old, new) in changed.items()})  # fmt: skip
        return opt.ProductionOptions.model_validate(typed.model_dump(), strict=False)


WORKFLOWS: dict[str, WorkflowSpec] = {
    spec.name: spec
    for spec in (
        WorkflowSpec(
            "movie_production",
            "The whole production: concepts (you choose), story with a quality gate and revisions, characters, "
            "visual and audio design, every scene, post-production, final assembly and your final approval.",
            build_movie_production,
            opt.MovieProductionOptions,
        ),
        WorkflowSpec(
            "character_development",
            "Story and cast only: the story from the brief, then every character created, checked for "
            "consistency, designed and voiced.",
            build_character_development,
            opt.CharacterDevelopmentOptions,
        ),
        WorkflowSpec(
            "episode_production",
            "One episode of an existing series from its brief: story (quality gate), cast, design, scenes, "
            "post-production and final assembly, without the concept choice.",
            build_episode_production,
            opt.EpisodeProductionOptions,
        ),
        WorkflowSpec(
            "preview",
            "A concept, one key image from the Task Service and a summary (seconds).",
            build_preview,
            opt.PreviewOptions,
        ),
        WorkflowSpec(
            "diagnostic_linear",
            "Ten steps that each add one, no outside calls: measures the engine and the store.",
            build_diagnostic_linear,
            opt.DiagnosticLinearOptions,
        ),
    )
}
