"""LangGraph graphs, their state schemas, the agent registry, the ports nodes use, the catalogue."""

from graphs._agents import AgentOutcome, run_agent
from graphs._budget import BUDGETS, BudgetExceededError, BudgetLimits, BudgetPort, Counted, Unlimited
from graphs._catalog import WORKFLOWS, WorkflowSpec
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
    OptionError,
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
    "PHASE_TO_AUTO_MOVIE",
    "REQUIRED_DELIVERABLES",
    "WORKFLOWS",
    "Agent",
    "AgentOutcome",
    "AutoMoviePort",
    "BrainPort",
    "BudgetExceededError",
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
    "OptionError",
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
