"""LangGraph graphs, their state schemas, the agent registry, the ports nodes use, the catalogue.

Imports only `adapters` (its error tree and the Task Service's task data keys); never `server`.
"""

from graphs._agents import AgentOutcome, run_agent
from graphs._budget import BUDGETS, BudgetLimits, BudgetPort, Counted, Unlimited
from graphs._catalog import WORKFLOWS, WorkflowSpec
from graphs._diagnostic import DIAGNOSTIC_STEPS
from graphs._movie import (
    MovieState,
    build_character_development,
    build_episode_production,
    build_movie_production,
)
from graphs._options import (
    CharacterDevelopmentOptions,
    DiagnosticLinearOptions,
    EpisodeProductionOptions,
    MovieProductionOptions,
    PreviewOptions,
    ProductionOptions,
    WorkflowOptions,
    allowed,
    read_options,
    repaired,
    validate_options,
)
from graphs._ports import AutoMoviePort, BrainPort, FilesPort, MemoPort, Ports, TaskPort
from graphs._preview import PreviewState, build_preview
from graphs._registry import PHASE_TO_AUTO_MOVIE, Agent, Registry, registry
from graphs._transforms import REQUIRED_DELIVERABLES
from graphs._writer import LocalWriter, WriterPort

__all__ = [
    "BUDGETS",
    "DIAGNOSTIC_STEPS",
    "PHASE_TO_AUTO_MOVIE",
    "REQUIRED_DELIVERABLES",
    "WORKFLOWS",
    "Agent",
    "AgentOutcome",
    "AutoMoviePort",
    "BrainPort",
    "BudgetLimits",
    "BudgetPort",
    "CharacterDevelopmentOptions",
    "Counted",
    "DiagnosticLinearOptions",
    "EpisodeProductionOptions",
    "FilesPort",
    "LocalWriter",
    "MemoPort",
    "MovieProductionOptions",
    "MovieState",
    "Ports",
    "PreviewOptions",
    "PreviewState",
    "ProductionOptions",
    "Registry",
    "TaskPort",
    "Unlimited",
    "WorkflowOptions",
    "WorkflowSpec",
    "WriterPort",
    "allowed",
    "build_character_development",
    "build_episode_production",
    "build_movie_production",
    "build_preview",
    "read_options",
    "registry",
    "repaired",
    "run_agent",
    "validate_options",
]
