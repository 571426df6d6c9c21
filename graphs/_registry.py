"""The agent registry: validated data from data/agents.toml, and routing by capability."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from adapters import LEGACY_TOOLS, TASK_DATA_KEYS

__all__ = ["PHASE_TO_AUTO_MOVIE", "Agent", "Operation", "Registry", "registry"]

Phase = Literal["story", "character", "visual", "audio", "scene", "post", "final"]

PHASE_TO_AUTO_MOVIE: dict[str, str] = {
    "story": "story_development",
    "character": "character_creation",
    "visual": "visual_design",
    "audio": "audio_design",
    "scene": "scene_production",
    "post": "post_production",
    "final": "final_assembly",
}
# The platform's documented Brain tools; the deployed build has only LEGACY_TOOLS, so an agent using any
# other one must name an alternative (it fails as a missing capability there).
_BRAIN_TOOLS = {"store_knowledge", "get_knowledge", "store_embedding", "search_embeddings", *LEGACY_TOOLS}
_AUTO_MOVIE_CALLS = {"get_project", "write_progress", "complete_project"}
_SERVICE_OF_KIND = {
    "task": "task-service",
    "brain": "brain",
    "auto_movie": "auto-movie",
    "writer": "llm",
    "local": "",
}


class Operation(BaseModel):
    """What an agent calls: a port and the operation on it."""

    kind: Literal["local", "writer", "task", "brain", "auto_movie"]
    name: str

    @property
    def service(self) -> str:
        """The outside service this operation depends on ("" for local work)."""
        return _SERVICE_OF_KIND[self.kind]

    @model_validator(mode="after")
    def _known(self) -> Operation:
        known = {"task": set(TASK_DATA_KEYS), "brain": _BRAIN_TOOLS, "auto_movie": _AUTO_MOVIE_CALLS}.get(
            self.kind
        )
        if known is not None and self.name not in known:
            msg = f"{self.kind} operation {self.name!r} does not exist; use one of {sorted(known)}"
            raise ValueError(msg)
        return self


class RetrySpec(BaseModel):
    """Retry policy of an agent's transient failures."""

    max_attempts: int = Field(ge=1, le=10)
    initial_interval: float = Field(gt=0, le=60)


class QualityGate(BaseModel):
    """A score the agent's output must reach."""

    metric: str
    threshold: float = Field(ge=0, le=100)


class Agent(BaseModel):
    """One specialised agent."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$")
    name: str
    phase: Phase
    capabilities: list[str] = Field(min_length=1)
    inputs: list[str]
    outputs: list[str] = Field(min_length=1)
    operation: Operation
    timeout: float = Field(gt=0, le=3600)
    retry: RetrySpec
    quality_gate: QualityGate | None = None
    alternatives: list[str] = Field(default_factory=list)


class Registry:
    """Every agent by id, with routing by capability and availability."""

    def __init__(self, agents: Iterable[Agent], local_ops: set[str] | None = None) -> None:
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            if agent.id in self.agents:
                msg = f"agent id {agent.id!r} appears twice in the registry"
                raise ValueError(msg)
            self.agents[agent.id] = agent
        for agent in self.agents.values():
            for alt in agent.alternatives:
                other = self.agents.get(alt)
                if other is None:
                    msg = f"agent {agent.id!r} names unknown alternative {alt!r}"
                    raise ValueError(msg)
                if not set(agent.capabilities) & set(other.capabilities):
                    msg = f"alternative {alt!r} of {agent.id!r} shares none of its capabilities"
                    raise ValueError(msg)
            op = agent.operation
            if op.kind == "brain" and op.name not in LEGACY_TOOLS and not agent.alternatives:
                msg = (f"agent {agent.id!r} uses Brain tool {op.name!r}, which the deployed Brain lacks (it has "
                       f"{', '.join(LEGACY_TOOLS)}): name an alternative agent")  # fmt: skip
                raise ValueError(msg)
            if (
                local_ops is not None
                and agent.operation.kind == "local"
                and agent.operation.name not in local_ops
            ):
                msg = (
                    f"agent {agent.id!r} uses local transform {agent.operation.name!r}, which does not exist"
                )
                raise ValueError(msg)

    def __getitem__(self, agent_id: str) -> Agent:
        return self.agents[agent_id]

    def __len__(self) -> int:
        return len(self.agents)

    def find(self, *, phase: str | None = None, capability: str | None = None) -> list[Agent]:
        """Agents of a phase and/or with a capability, in registry order."""
        return [
            a
            for a in self.agents.values()
            if (phase is None or a.phase == phase) and (capability is None or capability in a.capabilities)
        ]

    def chain(self, agent_id: str, unavailable: Callable[[str], bool] = lambda _: False) -> list[Agent]:
        """The agent and its alternatives (transitively), available ones first, each once."""
        order: list[Agent] = []
        queue = [agent_id]
        while queue:
            a = self.agents[queue.pop(0)]
            if a not in order:
                order.append(a)
                queue += a.alternatives
        return sorted(order, key=lambda a: unavailable(a.operation.service))

    def pick(self, capability: str, unavailable: Callable[[str], bool] = lambda _: False) -> Agent:
        """The first agent with `capability` whose service is available (else the first at all)."""
        candidates = self.find(capability=capability)
        if not candidates:
            msg = f"no agent has capability {capability!r}"
            raise KeyError(msg)
        for a in candidates:
            if not unavailable(a.operation.service):
                return a
        return candidates[0]


@cache
def registry() -> Registry:
    """The registry loaded from data/agents.toml (validated once per process)."""
    from graphs._transforms import TRANSFORMS

    raw = tomllib.loads((resources.files("graphs") / "data" / "agents.toml").read_text())
    return Registry((Agent.model_validate(a) for a in raw["agent"]), local_ops=set(TRANSFORMS))
