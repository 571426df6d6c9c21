"""The ports through which graph nodes reach the outside world, passed as LangGraph run context.

Nodes never build clients: the engine hands them a `Ports` for the run. Graph tests pass
in-process fakes of these protocols; the server passes adapters bound to the workflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphs._budget import BudgetPort, Unlimited
from graphs._options import ProductionOptions
from graphs._writer import WriterPort

__all__ = ["AutoMoviePort", "BrainPort", "FilesPort", "MemoPort", "Ports", "TaskPort"]


class TaskPort(Protocol):
    """Outside media jobs (the Task Service), at most once per step key."""

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit (or find the already submitted) job for `step_key` and wait for its result.

        Returns:
            The job's result: at least ``task_id`` and ``result_url`` (the media URL the service returned),
            and for an evaluation its ``rating`` (0-100), ``evaluation_result``, ``issues``, ``suggestions``.

        Raises:
            TransientError: the service is unreachable or overloaded (retry later).
            RecoverableError: the job failed (an alternative agent may do it).
            PermanentError: the request itself is wrong.
        """
        ...


class BrainPort(Protocol):
    """The Brain: knowledge and character consistency."""

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call a Brain tool; returns its JSON answer."""
        ...


class AutoMoviePort(Protocol):
    """The Auto-Movie app: project data and progress."""

    async def get_project(self, project_id: str) -> dict[str, Any]:
        """The project (normalised genre, settings, progress)."""
        ...

    async def write_progress(self, project_id: str, phase: str, completed: list[str], percent: float) -> None:
        """Write the production's progress back to the project (best effort)."""
        ...

    async def set_status(self, project_id: str, status: str) -> None:
        """Set the project's status."""
        ...


class MemoPort(Protocol):
    """Results of finished agent executions, so a re-run step does not redo them."""

    async def get(self, key: str) -> Any | None:
        """The stored result, or None."""
        ...

    async def put(self, key: str, value: Any) -> None:
        """Store a result."""
        ...


class FilesPort(Protocol):
    """Where local agents write deliverables."""

    async def write_file(self, name: str, content: str | bytes) -> str:
        """Write a file of this workflow; returns its URL or path."""
        ...


@dataclass(frozen=True)
class Ports:
    """Everything a node may call, bound to one workflow run, and the run's options.

    `options` is the workflow's options parsed once, when the run starts (`WorkflowSpec.run_options`):
    every production option, with the defaults of those the workflow does not take.
    """

    workflow_id: str
    project_id: str
    tasks: TaskPort
    brain: BrainPort
    auto_movie: AutoMoviePort
    writer: WriterPort
    memo: MemoPort
    files: FilesPort
    unavailable: Callable[[str], bool] = field(default=lambda _service: False)
    # (agent, outcome, what to tell): outcome ok | failed | transient; what to tell has ``detail`` and, for a
    # failure, the ``service``, ``operation``, ``step``, the service's own ``reason`` and what happens ``next``.
    on_agent: Callable[[str, str, Mapping[str, str]], None] = field(
        default=lambda _agent, _outcome, _info: None
    )
    budget: BudgetPort = field(default_factory=Unlimited)
    options: ProductionOptions = field(default_factory=ProductionOptions)
