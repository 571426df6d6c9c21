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
    OutcomeUnknownError,
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

__all__ = [
    "JOB_ENDED",
    "JobRef",
    "TaskServiceJobs",
    "cancel_jobs",
    "failure_reason",
    "new_nonce",
    "nonce_time",
    "outcome_of_row",
    "outcome_of_webhook",
]

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


# Where a result names its media: the real build's per-type fields first, then the documented ones.
_MEDIA_URL_FIELDS = ("image_url", "audio_url", "video_url", "media_url", "url")
_KEPT_FIELDS = ("thumbnail_url", "preview_url", "duration", "width", "height", "format")
_EVALUATION_FIELDS = ("evaluation_result", "evaluation_summary", "issues", "suggestions")


def failure_reason(payload: Mapping[str, Any]) -> str:
    """The service's own reason for a job's end, never empty (its message, else its traceback's last line)."""
    error = str(payload.get("error") or "").strip()
    if error:
        return error[:1000]
    lines = [line.strip() for line in str(payload.get("traceback") or "").splitlines() if line.strip()]
    if lines:
        return f"(no message) traceback ends: {lines[-1][:300]}"
    return "the Task Service reported it without a reason"


def outcome_of_webhook(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Task Service webhook a waiting step needs: status, media URL, reason, rating."""
    result = payload.get("result") or {}
    status = str(payload.get("status") or "")
    out: dict[str, Any] = {
        "status": status,
        "result_url": next((result[k] for k in _MEDIA_URL_FIELDS if result.get(k)), None),
        "error": "" if status == "completed" else failure_reason(payload),
    }
    out.update({k: result[k] for k in _KEPT_FIELDS if k in result})
    rating = result.get("rating", result.get("score"))  # `score`: what the documented build would say
    if rating is not None:
        out["rating"] = rating
        for k in _EVALUATION_FIELDS:
            if k in result:
                v = result[k]
                out[k] = [str(i)[:300] for i in v[:10]] if isinstance(v, list) else str(v)[:1000]
    return out


def outcome_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row of the project's task list says of a job that ended (the real build: status only)."""
    return {"status": row["status"], "result_url": row.get("result_url"), "error": row.get("error", "")}


def new_nonce(now: float | None = None) -> str:
    """A submission's nonce: its time (hex seconds) then 48 random bits, so a run that stopped mid-submit
    knows since when to look for the job it may have made."""
    return f"{int(time.time() if now is None else now):08x}{secrets.token_hex(6)}"


def nonce_time(nonce: str) -> float | None:
    """When a submission was made, from its nonce (None for a nonce of an older build)."""
    if len(nonce) != 20:
        return None
    try:
        return float(int(nonce[:8], 16))
    except ValueError:
        return None


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


# Rows created this long before a submission count when looking for the job it may have made (clock skew).
_CLOCK_SLACK = 10.0
# How a step's job ended, when it did not complete with a result.
_ENDED_AS = {"failed": "failed", "cancelled": "was cancelled", "stuck": "never reported an end"}


class TaskServiceJobs:
    """The Task Service as one workflow's nodes see it (TaskPort).

    A step's submission is recorded under ``<workflow>:<step_key>`` (its nonce first, then its job id),
    so a step resumed after a crash waits for the job it already submitted instead of submitting again.
    The service has no idempotency: a submit whose answer was lost is never repeated before reconciling
    (`_reconcile`). Results arrive by webhook (which wakes the waiter on whichever instance holds it); the
    project's task list is asked every `poll_max` seconds as a safety net, and when it shows the end first
    (the real build flips its status ~6 s before sending the webhook, and its rows carry neither result
    nor reason) the step waits up to `webhook_grace` more for the webhook. A job that reports no end at
    all within `job_max_seconds` (a record stuck at ``processing``) fails the step with that reason.
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
        webhook_grace: float = 15.0,
        job_max_seconds: float = 1800.0,
        unknown_grace: float = 300.0,
        reconcile_settle: float = 1.0,
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
        self._grace = webhook_grace
        self._job_max = job_max_seconds
        self._on_wait = on_wait
        self._unknown_grace = unknown_grace
        self._settle = reconcile_settle
        self._budget = budget
        self._healing = healing  # None: a job the service lost is given up after `unknown_grace` only

    @property
    def workflow_id(self) -> str:
        """The workflow whose jobs these are."""
        return self._wid

    def _callback(self, job: JobRef, nonce: str) -> str | None:
        return job.callback_url(self._webhook_base, self._secret, nonce) if self._webhook_base else None

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit once per step key, then wait for the job to finish.

        Raises:
            RecoverableError: the job failed or never reported an end (the service's own reason in the
                message and in ``reason``).
            TransientError: the service is unreachable (a submit that never left may be tried again), or the
                job completed and its result never came (the step's retry submits a new job).
            BudgetExceededError: a new job would go over the workflow's outside-jobs budget.
        """
        job = JobRef(self._wid, step_key)
        entry = await self._store.job_entry(self._wid, job.key)
        if entry is not None and entry[1]:
            task_id = entry[1]
            log.info("jobs.resumed_wait", step=step_key, task_id=task_id)
            fresh = False
        else:
            found = None
            if entry is not None:  # recorded, never answered: a run stopped while submitting
                found = await self._reconcile(
                    job, task_type, entry[0], "an earlier run stopped while submitting"
                )
            task_id = found or await self._submit(job, task_type, task_data, charge=entry is None)
            fresh = True
        async with outside():  # the run's CPU turn goes to another run while the job runs
            while True:
                try:
                    result = await self._wait(task_id, job.key, fresh=fresh)
                    break
                except JobLost as lost:  # the service no longer knows it: submitted again, once (_healing.py)
                    assert self._healing is not None
                    send = functools.partial(self._send, job, task_type, task_data)
                    task_id = await self._healing.resubmit(
                        self._wid, job.key, lost, send, self._budget, nonce=new_nonce()
                    )
                    fresh = True
        status = str(result.get("status"))
        if status != "completed":
            await self._store.forget_job(self._wid, job.key)  # a retry of this step submits a new job
            reason = str(result.get("error") or "") or "the Task Service gave no reason"
            if status == "no_result":
                # It completed and its result is gone with its webhook (sent to an instance that stopped, say):
                # the only way to a result is a new job, by the step's retry; the late webhook is still taken.
                msg = (f"task-service {task_type} job {task_id} for step {step_key!r} ended without a result: {reason}; "
                       "the step submits it again")  # fmt: skip
                raise TransientError(msg).about(service="task-service", operation=task_type, step=step_key,
                                                reason=reason)  # fmt: skip
            msg = f"task-service {task_type} job {task_id} for step {step_key!r} {_ENDED_AS.get(status, status)}: {reason}"
            raise RecoverableError(msg).about(service="task-service", operation=task_type, step=step_key,
                                              reason=reason)  # fmt: skip
        result.pop("submission", None)
        return {"task_id": task_id, **result}

    async def _submit(self, job: JobRef, task_type: str, task_data: dict[str, Any], *, charge: bool) -> str:
        """Submit the step's job and record its id; a lost answer is reconciled, never blindly repeated.

        The step is recorded (with a fresh nonce, and no job id yet) before submitting, so the job's
        webhook is expected even if it comes before the submission returns; its token covers the nonce.
        """
        # Only new submissions count: a resumed step waits for the job it already has.
        if charge and self._budget is not None:
            await self._budget.charge("outside_jobs", where=job.step)
        return await self._send(job, task_type, task_data, await self._new_submission(job))

    async def _new_submission(self, job: JobRef) -> str:
        """A fresh nonce, recorded as the step's submission (no job id yet) before anything is sent."""
        nonce = new_nonce()
        await self._store.remember_job(self._wid, job.key, "", nonce)
        return nonce

    async def _send(self, job: JobRef, task_type: str, task_data: dict[str, Any], nonce: str) -> str:
        """Submit the step's job under `nonce` (already recorded) and record its id.

        A lost answer is reconciled (`_reconcile`); when the service shows it made nothing, the job is
        submitted once more under a fresh nonce, and after that the step's retry policy decides.
        """
        for attempt in (1, 2):
            submit = functools.partial(
                self._client.submit, self._pid, task_type, task_data, idempotency_key=job.key,
                callback_url=self._callback(job, nonce), correlation_id=self._cid,
                metadata={"workflow_id": self._wid, "step": job.step, **_graph_position(), **tracing.carrier()},
            )  # fmt: skip
            try:
                answer = await self._guard.call(submit, on_wait=self._on_wait)
            except OutcomeUnknownError as exc:
                found = await self._reconcile(job, task_type, nonce, str(exc))
                if found is not None:
                    return found
                if attempt == 2:
                    raise  # the step's retry policy tries again later, reconciling first
                log.warning("jobs.resubmitting_after_reconcile", step=job.step, task_type=task_type)
                nonce = await self._new_submission(job)
                continue
            task_id = str(answer["task_id"])
            await self._store.remember_job(self._wid, job.key, task_id, nonce)
            log.info("jobs.submitted", step=job.step, task_id=task_id, task_type=task_type)
            return task_id
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _reconcile(self, job: JobRef, task_type: str, nonce: str, why: str) -> str | None:
        """The job a submission whose answer was lost made, or None when it made none (submit again then).

        Its webhook, which names the submission's token, settles it at once. Otherwise the project's tasks
        of that type created since the submission are listed: none that no workflow of the project knows
        means nothing was made. Jobs nobody here knows (ours, or one submitted elsewhere in the project) are
        waited on for up to `job_max_seconds` for a webhook naming ours; after that the step fails
        rather than risk a duplicate.

        Raises:
            RecoverableError: jobs that may be this submission's remain and none reported back.
        """
        loop = asyncio.get_running_loop()
        since = (nonce_time(nonce) or 0.0) - _CLOCK_SLACK
        deadline = loop.time() + self._job_max
        log.warning("jobs.submit_outcome_unknown", step=job.step, task_type=task_type, reason=why[:300])
        await asyncio.sleep(self._settle)  # the service saves its record after enqueuing the job
        candidates: list[str] = []
        while True:
            results = await self._store.step_results(self._wid, job.key)
            ours = [tid for tid, r in results.items() if r.get("submission") == nonce]  # not an earlier job's
            if ours:
                task_id = ours[0]
                await self._store.remember_job(self._wid, job.key, task_id, nonce)
                log.info("jobs.reconciled", step=job.step, task_id=task_id, by="webhook")
                return task_id
            rows = await self._guard.call(
                lambda: self._client.tasks_since(self._pid, task_type, since), on_wait=self._on_wait
            )
            known = await self._store.job_ids(self._wid) | await self._store.project_job_ids(self._pid)
            candidates = [str(r.get("task_id")) for r in rows if r.get("task_id") not in known]
            if not candidates:
                log.info("jobs.reconciled", step=job.step, task_id=None, by="task_list")
                return None
            if loop.time() >= deadline:
                break
            await self._store.wait_job_result(
                self._wid, job.key, "?", wait_seconds=min(2.0, deadline - loop.time())
            )
        await self._store.forget_job(self._wid, job.key)
        reason = (f"the submit's answer was lost ({why[:200]}) and the service has no idempotency; "
                  f"{len(candidates)} job(s) of that type appeared since ({', '.join(candidates[:5])}) and none "
                  f"reported back as this step's within {self._job_max:g} s, so it was not submitted again")  # fmt: skip
        msg = f"task-service {task_type} submission for step {job.step!r} is unresolved: {reason}"
        raise RecoverableError(msg).about(
            service="task-service", operation=task_type, step=job.step, reason=reason
        )

    async def _wait(self, task_id: str, key: str, *, fresh: bool) -> dict[str, Any]:
        """The job's outcome: from its webhook, or, when it does not come, from asking the service.

        With a webhook the service is asked only as a safety net, every `poll_max` seconds; without one,
        from a quarter second up to `poll_max`. A job found again after a restart (`fresh` False) is asked
        about at once: its webhook may have come while nobody listened.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        delay = self._poll_max if self._webhook_base else min(0.25, self._poll_max)
        next_poll = start + (delay if fresh else 0.0)
        ended: tuple[dict[str, Any], float] | None = None
        unknown_since: float | None = None
        last = "processing"
        # Healing: the project's shared listings tell a lost job within a few polls (server/engine/_healing.py).
        watch = self._healing.watch(self._pid, task_id, start) if self._healing is not None else None
        waiting_since = time.monotonic()
        while True:
            pushed = await self._store.job_result(self._wid, key, task_id)
            if pushed is not None:
                return pushed
            now = loop.time()
            if ended is not None:
                if now >= ended[1] + self._grace:
                    return self._without_webhook(task_id, ended[0])
            elif now - start >= self._job_max:
                return {"status": "stuck", "error": f"no end within {self._job_max:g} s: the Task Service still "
                        f"lists it as {last!r} and sent no webhook (a job that finishes before the service saves "
                        "its record stays 'processing' there for good)"}  # fmt: skip
            elif now >= next_poll:
                row = await (
                    watch.look(self._on_wait) if watch is not None
                    else self._guard.call(lambda: self._client.find(self._pid, task_id), on_wait=self._on_wait)
                )  # fmt: skip
                if row is not None and row.get("status") in JOB_ENDED:
                    if not self._webhook_base:
                        return self._without_webhook(task_id, row)
                    ended = (row, loop.time())
                    log.info("jobs.ended_before_webhook", task_id=task_id, status=row.get("status"))
                elif row is None and watch is not None and watch.lost and self._healing is not None:
                    raise self._healing.lost(watch, outage=self._guard.last_failure_at >= waiting_since)
                elif row is None:
                    unknown_since = await self._unknown(task_id, key, unknown_since)
                else:
                    unknown_since, last = None, str(row.get("status"))
                next_poll = loop.time() + delay
                delay = min(delay * 2, self._poll_max)
                if watch is not None:
                    next_poll = watch.next_look(next_poll)
            until = ended[1] + self._grace if ended is not None else min(next_poll, start + self._job_max)
            await self._store.wait_job_result(
                self._wid, key, task_id, wait_seconds=max(0.0, until - loop.time())
            )

    async def _unknown(self, task_id: str, key: str, since: float | None) -> float:
        """Since when the service has not known the job; past `unknown_grace` the job is forgotten.

        Task records expire after 24 h and a restarted service may forget them: after a while, forget the
        job so the step's retry submits a new one (never read as "failed").

        Raises:
            TransientError: the job has been unknown for longer than `unknown_grace`.
        """
        now = asyncio.get_running_loop().time()
        since = since if since is not None else now
        log.warning("jobs.unknown_to_service", task_id=task_id)
        if now - since > self._unknown_grace:
            await self._store.forget_job(self._wid, key)
            msg = f"task {task_id} is unknown to the Task Service; submitting the step again"
            raise TransientError(msg).about(service="task-service", reason=msg)
        return since

    def _without_webhook(self, task_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The outcome of a job the task list says ended, when no webhook told more."""
        status = str(row.get("status"))
        if status == "completed" and row.get("result_url"):
            return outcome_of_row(row)  # a build whose list carries the result (the documented one)
        waited = f"within {self._grace:g} s" if self._webhook_base else "(no webhook is configured)"
        if status == "completed":
            return {"status": "no_result", "error": f"the Task Service lists job {task_id} as completed, but its "
                    f"result comes only by webhook and none arrived {waited} (its task list carries no result)"}  # fmt: skip
        return {"status": status, "error": f"the Task Service lists job {task_id} as {status}; its reason comes "
                f"only by webhook, which did not arrive {waited} (its task list carries no reason)"}  # fmt: skip
