"""The ports of one workflow run, made of the real adapters behind their service guards."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from langgraph.config import get_config

from adapters import (
    AutoMovieClient,
    BrainClient,
    OrchestratorError,
    PermanentError,
    RecoverableError,
    ServiceGuard,
    TaskServiceClient,
    TransientError,
    WorkflowStore,
)
from adapters._cpu_gate import outside
from graphs import BudgetPort

__all__ = ["GuardedAutoMovie", "GuardedBrain", "MediaFiles", "RedisMemo", "WorkflowTasks", "webhook_token"]

log = structlog.get_logger(__name__)

OnWait = Callable[[str], Awaitable[None]]


def webhook_token(secret: bytes, workflow_id: str, step_key: str, nonce: str) -> str:
    """The per-job token a webhook must carry: HMAC of workflow, step and the submission's own nonce."""
    msg = f"{len(workflow_id)}:{workflow_id}{len(step_key)}:{step_key}{len(nonce)}:{nonce}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:32]


def _graph_position() -> dict[str, Any]:
    """The superstep and the task of the graph submitting a job (for benchmark 7's critical path)."""
    try:
        meta = get_config().get("metadata", {})
    except RuntimeError:  # not inside a graph run
        return {}
    return {"graph_step": meta.get("langgraph_step"), "graph_task": meta.get("langgraph_checkpoint_ns", "")}


class WorkflowTasks:
    """The Task Service as one workflow's nodes see it (TaskPort).

    A step's job id is recorded under ``<workflow>:<step_key>`` before waiting, so a step resumed after
    a crash waits for the job it already submitted instead of submitting again. Results arrive by
    webhook (which wakes the waiter on whichever instance holds it) or, when no webhook comes, by
    polling the project's task list with exponential backoff.
    """

    def __init__(
        self,
        store: WorkflowStore,
        client: TaskServiceClient,
        guard: ServiceGuard,
        *,
        workflow_id: str,
        project_id: str,
        correlation_id: str = "",
        webhook_base: str = "",
        webhook_secret: bytes = b"",
        poll_max: float = 5.0,
        unknown_grace: float = 300.0,
        on_wait: OnWait | None = None,
        budget: BudgetPort | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._guard = guard
        self._wid = workflow_id
        self._pid = project_id
        self._cid = correlation_id
        self._webhook_base = webhook_base
        self._secret = webhook_secret
        self._poll_max = poll_max
        self._on_wait = on_wait
        self._unknown_grace = unknown_grace
        self._budget = budget

    def _callback(self, step_key: str, nonce: str) -> str | None:
        if not self._webhook_base:
            return None
        token = webhook_token(self._secret, self._wid, step_key, nonce)
        query = urlencode({"wid": self._wid, "step": step_key, "n": nonce, "token": token})
        return f"{self._webhook_base}/webhooks/tasks?{query}"

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit once per step key, then wait for the job to finish.

        The step is recorded (with a fresh nonce, and no job id yet) before submitting, so the job's
        webhook is expected even if it comes before the submission returns; its token covers the nonce.

        Raises:
            BudgetExceededError: a new job would go over the workflow's outside-jobs budget.
        """
        key = f"{self._wid}:{step_key}"
        task_id = await self._store.job_for(self._wid, key)
        if task_id is None:
            if self._budget is not None:  # only new submissions count: a resumed step waits for its job
                await self._budget.charge("outside_jobs", where=step_key)
            nonce = secrets.token_hex(8)
            await self._store.remember_job(self._wid, key, "", nonce)
            answer = await self._guard.call(
                lambda: self._client.submit(
                    self._pid, task_type, task_data, idempotency_key=key, callback_url=self._callback(step_key, nonce),
                    metadata={"workflow_id": self._wid, "step": step_key, **_graph_position()},
                    correlation_id=self._cid,
                ),
                on_wait=self._on_wait,
            )  # fmt: skip
            task_id = str(answer["task_id"])
            await self._store.remember_job(self._wid, key, task_id, nonce)
            log.info("jobs.submitted", step=step_key, task_id=task_id, task_type=task_type)
            fresh = True
        else:
            log.info("jobs.resumed_wait", step=step_key, task_id=task_id)
            fresh = False
        async with outside():  # the run's CPU turn goes to another run while the job runs
            result = await self._wait(task_id, key, fresh=fresh)
        if result.get("status") != "completed":
            await self._store.forget_job(self._wid, key)  # a retry of this step submits a new job
            msg = f"{task_type} job {task_id} for step {step_key!r} {result.get('status')}: {result.get('error', '')}"
            raise RecoverableError(msg)
        if task_type == "evaluate_department" and "score" not in result and result.get("result_url"):
            result = {**result, **await self._fetch_json(str(result["result_url"]))}
        return {"task_id": task_id, **result}

    async def _fetch_json(self, url: str) -> dict[str, Any]:
        try:
            return await self._guard.call(lambda: self._client.fetch_json(url), on_wait=self._on_wait)
        except PermanentError as exc:
            msg = f"evaluation result at {url} could not be read: {exc}"
            raise RecoverableError(msg) from exc

    async def _wait(self, task_id: str, key: str, *, fresh: bool) -> dict[str, Any]:
        """The job's outcome: from its webhook, or from asking the service.

        With a webhook the service is asked only as a safety net (a lost webhook), every `poll_max`
        seconds; without one, from a quarter second up to `poll_max`. A job found again after a
        restart (`fresh` False) is asked about at once: its webhook may have come while nobody listened.
        """
        loop = asyncio.get_running_loop()
        delay = self._poll_max if self._webhook_base else min(0.25, self._poll_max)
        next_poll = loop.time() + (delay if fresh else 0.0)
        unknown_since: float | None = None
        while True:
            pushed = await self._store.job_result(self._wid, key, task_id)
            if pushed is not None:
                return pushed
            if loop.time() >= next_poll:
                row = await self._guard.call(
                    lambda: self._client.find(self._pid, task_id), on_wait=self._on_wait
                )
                if row is not None and row.get("status") in {"completed", "failed", "cancelled"}:
                    return {
                        "status": row["status"],
                        "result_url": row.get("result_url"),
                        "error": row.get("error", ""),
                    }
                if row is None:
                    # Task records expire after 24 h and a restarted service may forget them: after a
                    # while, forget the job so the step's retry submits a new one (never read as "failed").
                    unknown_since = unknown_since if unknown_since is not None else loop.time()
                    log.warning("jobs.unknown_to_service", task_id=task_id)
                    if loop.time() - unknown_since > self._unknown_grace:
                        await self._store.forget_job(self._wid, key)
                        msg = f"task {task_id} is unknown to the Task Service; submitting the step again"
                        raise TransientError(msg)
                else:
                    unknown_since = None
                next_poll = loop.time() + delay
                delay = min(delay * 2, self._poll_max)
            await self._store.wait_job_result(
                self._wid, key, task_id, wait_seconds=max(0.0, next_poll - loop.time())
            )


class GuardedBrain:
    """BrainPort: the Brain client behind its guard."""

    def __init__(self, client: BrainClient, guard: ServiceGuard, on_wait: OnWait | None = None) -> None:
        self._client, self._guard, self._on_wait = client, guard, on_wait

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call a Brain tool with retries and the breaker."""
        return await self._guard.call(lambda: self._client.call(tool, args), on_wait=self._on_wait)


class GuardedAutoMovie:
    """AutoMoviePort: the Auto-Movie client behind its guard; progress is best effort."""

    def __init__(self, client: AutoMovieClient | None, guard: ServiceGuard, correlation_id: str = "") -> None:
        self._client, self._guard, self._cid = client, guard, correlation_id

    async def get_project(self, project_id: str) -> dict[str, Any]:
        """The project, or defaults when no Auto-Movie is configured."""
        if self._client is None:
            return {"id": project_id, "genre": "other", "projectSettings": {}, "progress": {}}
        client = self._client
        return await self._guard.call(lambda: client.get_project(project_id, correlation_id=self._cid))

    async def write_progress(self, project_id: str, phase: str, completed: list[str], percent: float) -> None:
        """Write progress; failures are logged, never raised (progress must not stop a production)."""
        if self._client is None:
            return
        client = self._client
        try:
            await self._guard.call(
                lambda: client.write_progress(project_id, phase, completed, percent, correlation_id=self._cid)
            )
        except OrchestratorError as exc:
            log.warning("auto_movie.progress_not_written", phase=phase, error=str(exc)[:200])

    async def set_status(self, project_id: str, status: str) -> None:
        """Set the project status (best effort, like progress)."""
        if self._client is None:
            return
        client = self._client
        try:
            await self._guard.call(lambda: client.update_status(project_id, status, correlation_id=self._cid))
        except OrchestratorError as exc:
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
    """FilesPort: deliverables under ``<media_dir>/<project>/<workflow>/``."""

    def __init__(self, root: Path, project_id: str, workflow_id: str) -> None:
        self.folder = root / project_id / workflow_id

    async def write_file(self, name: str, content: str | bytes) -> str:
        """Write a deliverable; returns its path."""
        safe = Path(name).name
        data = content if isinstance(content, bytes) else content.encode()

        def write() -> str:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / safe).write_bytes(data)
            return str(self.folder / safe)

        return await asyncio.to_thread(write)
