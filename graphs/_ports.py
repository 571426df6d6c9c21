"""The ports through which graph nodes reach the outside world, passed as LangGraph run context.

Nodes never build clients: the engine hands them a `Ports` for the run. Tests pass in-process
fakes of these protocols; the server passes adapters bound to the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Ports", "TaskPort"]


class TaskPort(Protocol):
    """Outside media jobs (the Task Service), at most once per step key."""

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit (or find the already submitted) job for `step_key` and wait for its result.

        Returns:
            The job's result: at least ``task_id`` and ``result_url``.

        Raises:
            TransientError: the service is unreachable or overloaded (retry later).
            RecoverableError: the job failed (an alternative agent may do it).
            PermanentError: the request itself is wrong.
        """
        ...


@dataclass(frozen=True)
class Ports:
    """Everything a node may call, bound to one workflow run."""

    workflow_id: str
    project_id: str
    tasks: TaskPort
