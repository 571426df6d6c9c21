"""The ports of one workflow run (`graphs.Ports`), made of the real adapters behind their service guards.

`RunPorts` builds them for each run from the workflow's record: the Task Service's jobs, the Brain,
Auto-Movie, the writer, the memo of finished agent results, the deliverables folder, the budget and the
run's options, parsed once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from adapters import (
    AutoMovieClient,
    BrainClient,
    OutsideError,
    ServiceGuard,
    TaskServiceClient,
    WorkflowRecord,
    WorkflowStore,
)
from graphs import WORKFLOWS, Ports, WriterPort
from server.core import Deliverables
from server.engine._budget_counters import BudgetCounters
from server.engine._healing import Healing, OnWait
from server.engine._jobs import TaskServiceJobs
from server.telemetry import Metrics

__all__ = ["GuardedAutoMovie", "GuardedBrain", "MediaFiles", "RedisMemo", "RunPorts", "ServiceClients"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceClients:
    """The outside services' clients and their guards (one per process)."""

    tasks: TaskServiceClient
    brain: BrainClient
    auto_movie: AutoMovieClient | None
    writer: WriterPort
    guards: Mapping[str, ServiceGuard]

    def unavailable(self, service: str) -> bool:
        """True while the service's breaker is open."""
        g = self.guards.get(service)
        return g is not None and g.state == "open"


class RunPorts:
    """Builds the ports of each run.

    Args:
        store: the workflow store (status updates, memo, jobs).
        services: the outside services' clients and guards.
        budgets: the budget counters.
        deliverables: where deliverables are written.
        metrics: agent execution counters.
        webhook_base: the address the Task Service calls back ("" polls only).
        webhook_secret: the key of the webhook tokens.
        poll_seconds: how often a job is asked about when no webhook comes.
        healing: finds the jobs the Task Service lost and submits them again (None: after `unknown_grace`).
        unknown_grace: how long a job the service does not list is waited for when it cannot tell whether it
            lost it.
        webhook_grace: how long a job the task list shows ended waits for its webhook (result, reason).
        job_max_seconds: how long a job may report no end at all before its step fails.
    """

    def __init__(
        self,
        store: WorkflowStore,
        services: ServiceClients,
        *,
        budgets: BudgetCounters,
        deliverables: Deliverables,
        metrics: Metrics,
        webhook_base: str,
        webhook_secret: bytes,
        poll_seconds: float,
        healing: Healing | None = None,
        unknown_grace: float = 300.0,
        webhook_grace: float = 15.0,
        job_max_seconds: float = 1800.0,
    ) -> None:
        self._store = store
        self._services = services
        self._budgets = budgets
        self._deliverables = deliverables
        self._metrics = metrics
        self._webhook_base = webhook_base
        self._secret = webhook_secret
        self._poll_seconds = poll_seconds
        self._healing = healing
        self._unknown_grace = unknown_grace
        self._webhook_grace = webhook_grace
        self._job_max = job_max_seconds
        self._pending: set[asyncio.Task[Any]] = set()

    def __call__(self, rec: WorkflowRecord) -> Ports:
        """The ports of a run of `rec` (its options parsed here, once for the run)."""
        services, store = self._services, self._store
        options = WORKFLOWS[rec.workflow].run_options(rec.options)
        budget = self._budgets.for_workflow(rec.id, options)

        async def on_wait(reason: str) -> None:
            await store.update(rec.id, {"waiting_reason": reason, "message": reason},
                               event="service.waiting", event_data={"reason": reason})  # fmt: skip

        return Ports(
            workflow_id=rec.id,
            project_id=rec.project_id,
            tasks=TaskServiceJobs(store, services.tasks, services.guards["task-service"], workflow_id=rec.id,
                                  project_id=rec.project_id, correlation_id=rec.correlation_id,
                                  webhook_base=self._webhook_base, webhook_secret=self._secret,
                                  poll_max=self._poll_seconds, webhook_grace=self._webhook_grace,
                                  job_max_seconds=self._job_max, on_wait=on_wait, budget=budget, healing=self._healing,
                                  unknown_grace=self._unknown_grace),
            brain=GuardedBrain(services.brain, services.guards["brain"], on_wait),
            auto_movie=GuardedAutoMovie(services.auto_movie, services.guards["auto-movie"], rec.correlation_id),
            writer=services.writer,
            memo=RedisMemo(store, rec.id),
            files=MediaFiles(self._deliverables, rec.project_id, rec.id),
            unavailable=services.unavailable,
            on_agent=lambda agent, outcome, info: self._on_agent(rec.id, agent, outcome, info),
            budget=budget,
            options=options,
        )  # fmt: skip

    def _on_agent(self, wid: str, agent: str, outcome: str, info: Mapping[str, str]) -> None:
        self._metrics.agent_executions.labels(agent, outcome).inc()
        if outcome != "ok" or info.get("detail"):
            event = self._store.update(wid, {}, event=f"agent.{outcome}", event_data={"agent": agent, **info})
            task = asyncio.get_running_loop().create_task(event)
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


class GuardedBrain:
    """BrainPort: the Brain client behind its guard."""

    def __init__(self, client: BrainClient, guard: ServiceGuard, on_wait: OnWait | None = None) -> None:
        self._client, self._guard, self._on_wait = client, guard, on_wait

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call a Brain tool with retries and the breaker."""
        return await self._guard.call(
            lambda: self._client.call(tool, args), on_wait=self._on_wait, operation=tool
        )


class GuardedAutoMovie:
    """AutoMoviePort: the Auto-Movie client behind its guard; progress is best effort."""

    def __init__(self, client: AutoMovieClient | None, guard: ServiceGuard, correlation_id: str = "") -> None:
        self._client, self._guard, self._cid = client, guard, correlation_id

    async def get_project(self, project_id: str) -> dict[str, Any]:
        """The project, or defaults when no Auto-Movie is configured."""
        if self._client is None:
            return {"id": project_id, "genre": "other", "projectSettings": {}, "progress": {}}
        client = self._client
        return await self._guard.call(
            lambda: client.get_project(project_id, correlation_id=self._cid), operation="get_project"
        )

    async def write_progress(self, project_id: str, phase: str, completed: list[str], percent: float) -> None:
        """Write progress; failures are logged, never raised (progress must not stop a production)."""
        if self._client is None:
            return
        client = self._client
        try:
            await self._guard.call(
                lambda: client.write_progress(
                    project_id, phase, completed, percent, correlation_id=self._cid
                ),
                operation="write_progress",
            )
        except OutsideError as exc:
            log.warning("auto_movie.progress_not_written", phase=phase, error=str(exc)[:200])

    async def set_status(self, project_id: str, status: str) -> None:
        """Set the project status (best effort, like progress)."""
        if self._client is None:
            return
        client = self._client
        try:
            await self._guard.call(
                lambda: client.update_status(project_id, status, correlation_id=self._cid),
                operation="update_status",
            )
        except OutsideError as exc:
            log.warning("auto_movie.status_not_written", status=status, error=str(exc)[:200])


class RedisMemo:
    """MemoPort: finished agent results in ``P:wf:{wid}:memo``, signed with their workflow and key."""

    def __init__(self, store: WorkflowStore, workflow_id: str) -> None:
        self._store, self._wid = store, workflow_id

    async def get(self, key: str) -> Any | None:
        """A stored result or None.

        Raises:
            IntegrityError: the entry was written or changed outside the orchestrator.
        """
        return await self._store.memo_get(self._wid, key)

    async def put(self, key: str, value: Any) -> None:
        """Store a result (it expires with the workflow)."""
        await self._store.memo_put(self._wid, key, value)


class MediaFiles:
    """FilesPort: the workflow's deliverables folder (`Deliverables`)."""

    def __init__(self, deliverables: Deliverables, project_id: str, workflow_id: str) -> None:
        self.folder = deliverables.folder(project_id, workflow_id)

    async def write_file(self, name: str, content: str | bytes) -> str:
        """Write a deliverable; returns its path."""
        safe = Path(name).name
        data = content if isinstance(content, bytes) else content.encode()

        def write() -> str:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / safe).write_bytes(data)
            return str(self.folder / safe)

        return await asyncio.to_thread(write)
