"""LangGraph graphs, their state schemas, the agent registry, the ports nodes use, the catalogue."""

from graphs._agents import AgentOutcome, run_agent
from graphs._catalog import WORKFLOWS, WorkflowSpec
from graphs._movie import (
    MovieState,
    build_character_development,
    build_episode_production,
    build_movie_production,
)
from graphs._ports import AutoMoviePort, BrainPort, FilesPort, MemoPort, Ports, TaskPort
from graphs._preview import PreviewState, build_preview
from graphs._registry import PHASE_TO_AUTO_MOVIE, Agent, Registry, registry
from graphs._transforms import REQUIRED_DELIVERABLES
from graphs._writer import LocalWriter, WriterPort

__all__ = [
    "PHASE_TO_AUTO_MOVIE",
    "REQUIRED_DELIVERABLES",
    "WORKFLOWS",
    "Agent",
    "AgentOutcome",
    "AutoMoviePort",
    "BrainPort",
    "FilesPort",
    "LocalWriter",
    "MemoPort",
    "MovieState",
    "Ports",
    "PreviewState",
    "Registry",
    "TaskPort",
    "WorkflowSpec",
    "WriterPort",
    "build_character_development",
    "build_episode_production",
    "build_movie_production",
    "build_preview",
    "registry",
    "run_agent",
]
