"""TaskPort for one workflow: at-most-once submits, waiting by webhook wake-up or polling."""

from __future__ import annotations

import json
from typing import Any

import structlog

from adapters import RecoverableError, TaskServiceClient, WorkflowStore

__all__ = ["WorkflowTasks"]

log = structlog.get_logger(__name__)


class WorkflowTasks:
    """The Task Service as one workflow's nodes see it.

    A step's job id is recorded under ``<workflow>:<step_key>`` before waiting, so a step resumed
    after a crash waits for the job it already submitted instead of submitting again.

    Args:
        store: the workflow store (job records, webhook results).
        client: the Task Service client.
        workflow_id, project_id: whose jobs these are.
        callback_url: webhook URL the service should call, or "" to rely on polling.
        poll_max: longest pause between two polls of the project's task list.
    """

    def __init__(
        self,
        store: WorkflowStore,
        client: TaskServiceClient,
        *,
        workflow_id: str,
        project_id: str,
        correlation_id: str = "",
        callback_url: str = "",
        poll_max: float = 5.0,
    ) -> None:
        self._store = store
        self._client = client
        self._wid = workflow_id
        self._pid = project_id
        self._cid = correlation_id
        self._callback = callback_url
        self._poll_max = poll_max

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        """Submit once per step key, then wait for the job to finish."""
        key = f"{self._wid}:{step_key}"
        task_id = await self._store.job_for(self._wid, key)
        if task_id is None:
            answer = await self._client.submit(
                self._pid,
                task_type,
                task_data,
                idempotency_key=key,
                callback_url=self._callback or None,
                metadata={"workflow_id": self._wid, "step": step_key},
                correlation_id=self._cid,
            )
            task_id = str(answer["task_id"])
            await self._store.remember_job(self._wid, key, task_id)
            log.info(
                "jobs.submitted", workflow_id=self._wid, step=step_key, task_id=task_id, task_type=task_type
            )
        else:
            log.info("jobs.resumed_wait", workflow_id=self._wid, step=step_key, task_id=task_id)
        result = await self._wait(task_id)
        if result.get("status") != "completed":
            # Forget the failed job so a retry of this step submits a new one.
            await self._store.forget_job(self._wid, key)
            msg = f"{task_type} job {task_id} for step {step_key!r} {result.get('status')}: {result.get('error', '')}"
            raise RecoverableError(msg)
        return {"task_id": task_id, **result}

    async def _wait(self, task_id: str) -> dict[str, Any]:
        delay = 0.05
        while True:
            pushed = await self._store.job_result(task_id)
            if pushed is not None:
                return pushed
            row = await self._client.find(self._pid, task_id)
            if row is not None and row.get("status") in {"completed", "failed", "cancelled"}:
                return {
                    "status": row["status"],
                    "result_url": row.get("result_url"),
                    "error": row.get("error", ""),
                }
            if row is None:
                log.warning("jobs.unknown_to_service", workflow_id=self._wid, task_id=task_id)
            await self._store.wait_job_result(task_id, wait_seconds=delay)
            delay = min(delay * 2, self._poll_max)


def webhook_result(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a Task Service webhook a waiting step needs."""
    result = payload.get("result") or {}
    return {
        "status": payload.get("status"),
        "result_url": result.get("media_url") or result.get("url"),
        "result": result,
        "error": payload.get("error", ""),
        "raw": json.dumps(payload)[:2000],
    }
