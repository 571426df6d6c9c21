"""Task Service jobs of a workflow: their identity, the port graph nodes submit through, their outcomes.

One place for what a job is:

- `JobRef`: a step's job is named by its workflow and step key (``<workflow>:<step>``, the store's key);
  its webhook URL carries a token, the HMAC of workflow, step and a nonce drawn for that submission.
- `TaskServiceJobs` (the graphs' `TaskPort`): submits at most once per step and waits for the outcome.
- `outcome_of_webhook` / `outcome_of_row`: what a webhook body or a task-list row says of a job's end.
- `cancel_jobs`: cancels every job a workflow awaits.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from langgraph.config import get_config

from adapters import (
    PermanentError,
    RecoverableError,
    ServiceGuard,
    TaskServiceClient,
    TransientError,
    WorkflowStore,
    outside,
    tracing,
)
from graphs import BudgetPort
from server.engine._healing import Healing, JobLost, OnWait

__all__ = ["JOB_ENDED", "JobRef", "TaskServiceJobs", "cancel_jobs", "outcome_of_row", "outcome_of_webhook"]

log = structlog.get_logger(__name__)

# Job statuses of the Task Service that are an end.
JOB_ENDED = frozenset({"completed", "failed", "cancelled"})
WEBHOOK_PATH = "/webhooks/tasks"


@dataclass(frozen=True)
class JobRef:
    """The outside job of one step of one workflow."""

    workflow_id: str
    step: str

    @property
    def key(self) -> str:
        """The job's key in the workflow's jobs (its idempotency key)."""
        return f"{self.workflow_id}:{self.step}"

    def token(self, secret: bytes, nonce: str) -> str:
        """The token its webhook must carry: HMAC of workflow, step and the submission's own nonce."""
        w, s = self.workflow_id, self.step
        msg = f"{len(w)}:{w}{len(s)}:{s}{len(nonce)}:{nonce}".encode()
        return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:32]

    def token_matches(self, secret: bytes, nonce: str, token: str) -> bool:
        """Constant-time check of a webhook's token."""
        return bool(self.workflow_id) and hmac.compare_digest(
            token.encode(), self.token(secret, nonce).encode()
        )

    def callback_url(self, base: str, secret: bytes, nonce: str) -> str:
        """The webhook URL of one submission of this job."""
        query = urlencode({"wid": self.workflow_id, "step": self.step, "n": nonce,
                           "token": self.token(secret, nonce)})  # fmt: skip
        return f"{base}{WEBHOOK_PATH}?{query}"


def outcome_of_webhook(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Task Service webhook a waiting step needs."""
    result = payload.get("result") or {}
    out: dict[str, Any] = {
        "status": payload.get("status"),
        "result_url": result.get("media_url") or result.get("url"),
        "error": payload.get("error", ""),
    }
    if "score" in result:
        out["score"] = result["score"]
    return out


def outcome_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row of the project's task list says of a job that ended."""
    return {"status": row["status"], "result_url": row.get("result_url"), "error": row.get("error", "")}


async def cancel_jobs(store: WorkflowStore, client: TaskServiceClient, wid: str) -> None:
    """Cancel every outside job the workflow awaits (best effort: a failure is logged)."""
    for key, task_id in (await store.jobs(wid)).items():
        try:
            await client.cancel(task_id)
            log.info("jobs.cancelled", workflow_id=wid, step=key, task_id=task_id)
        except Exception:
            log.warning("jobs.cancel_failed", workflow_id=wid, task_id=task_id)


def _graph_position() -> dict[str, Any]:
    """The superstep and the task of the graph submitting a job (for benchmark 7's critical path)."""
    try:
        meta = get_config().get("metadata", {})
    except RuntimeError:  # not inside a graph run
        return {}
    return {"graph_step": meta.get("langgraph_step"), "graph_task": meta.get("langgraph_checkpoint_ns", "")}


class TaskServiceJobs:
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
        healing: Healing | None = None,
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
        self._healing = healing  # None: a job the service lost is given up after `unknown_grace` only

    def _callback(self, job: JobRef, nonce: str) -> str | None:
        return job.callback_url(self._webhook_base, self._secret, nonce) if self._webhook_base else None

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit once per step key, then wait for the job to finish.

        The step is recorded (with a fresh nonce, and no job id yet) before submitting, so the job's
        webhook is expected even if it comes before the submission returns; its token covers the nonce.

        Raises:
            BudgetExceededError: a new job would go over the workflow's outside-jobs budget.
        """
        job = JobRef(self._wid, step_key)
        key = job.key
        task_id = await self._store.job_for(self._wid, key)
        if task_id is None:
            if self._budget is not None:  # only new submissions count: a resumed step waits for its job
                await self._budget.charge("outside_jobs", where=step_key)
            nonce = secrets.token_hex(8)
            await self._store.remember_job(self._wid, key, "", nonce)
            task_id = await self._send(job, task_type, task_data, nonce)
            fresh = True
        else:
            log.info("jobs.resumed_wait", step=step_key, task_id=task_id)
            fresh = False
        async with outside():  # the run's CPU turn goes to another run while the job runs
            while True:
                try:
                    result = await self._wait(task_id, key, fresh=fresh)
                    break
                except JobLost as lost:  # the service no longer knows it: submitted again, once (_healing.py)
                    assert self._healing is not None
                    send = functools.partial(self._send, job, task_type, task_data)
                    task_id = await self._healing.resubmit(self._wid, key, lost, send, self._budget)
                    fresh = True
        if result.get("status") != "completed":
            await self._store.forget_job(self._wid, key)  # a retry of this step submits a new job
            msg = f"{task_type} job {task_id} for step {step_key!r} {result.get('status')}: {result.get('error', '')}"
            raise RecoverableError(msg)
        if task_type == "evaluate_department" and "score" not in result and result.get("result_url"):
            result = {**result, **await self._fetch_json(str(result["result_url"]))}
        return {"task_id": task_id, **result}

    async def _send(self, job: JobRef, task_type: str, task_data: dict[str, Any], nonce: str) -> str:
        """Submit the step's job under `nonce` (already recorded) and record its id."""
        answer = await self._guard.call(
            lambda: self._client.submit(
                self._pid, task_type, task_data, idempotency_key=job.key, callback_url=self._callback(job, nonce),
                metadata={"workflow_id": self._wid, "step": job.step, **_graph_position(), **tracing.carrier()},
                correlation_id=self._cid,
            ),
            on_wait=self._on_wait,
        )  # fmt: skip
        task_id = str(answer["task_id"])
        await self._store.remember_job(self._wid, job.key, task_id, nonce)
        log.info("jobs.submitted", step=job.step, task_id=task_id, task_type=task_type)
        return task_id

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
        # Healing: the project's shared listings tell a lost job within a few polls (server/engine/_healing.py).
        watch = self._healing.watch(self._pid, task_id, loop.time()) if self._healing is not None else None
        waiting_since = time.monotonic()
        while True:
            pushed = await self._store.job_result(self._wid, key, task_id)
            if pushed is not None:
                return pushed
            if loop.time() >= next_poll:
                row = await (
                    watch.look(self._on_wait) if watch is not None
                    else self._guard.call(lambda: self._client.find(self._pid, task_id), on_wait=self._on_wait)
                )  # fmt: skip
                if row is not None and row.get("status") in JOB_ENDED:
                    return outcome_of_row(row)
                if row is None and watch is not None and watch.lost and self._healing is not None:
                    raise self._healing.lost(watch, outage=self._guard.last_failure_at >= waiting_since)
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
                if watch is not None:
                    next_poll = watch.next_look(next_poll)
            await self._store.wait_job_result(
                self._wid, key, task_id, wait_seconds=max(0.0, next_poll - loop.time())
            )
