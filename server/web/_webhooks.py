"""Task Service webhooks: ``POST /webhooks/tasks?wid=&step=&n=&token=``, each bound to the job its step awaits.

A webhook is refused with 401 for a wrong token, 400 for a malformed body, 404 when that step has no
submission with that nonce (never submitted, or an earlier one), and 409 when its body names another job
than the step's (or the step's entry fails its signature); refusals are counted and audited. A result is
stored under the workflow and step its token names and signed there; a repeated webhook is accepted once.

A webhook for a submission its step already settled (the real service's task list shows the end ~6 s
before the webhook; a step may give up waiting) is still that step's: it is accepted (200, counted as
``late``, not audited, never refused: the service would only send it twice more) and its outcome is
written to the workflow's events, so a reason that came late is still shown.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters import IntegrityError, SecurityAudit, WorkflowStore, tracing
from server.engine import JobRef, outcome_of_webhook
from server.telemetry import Metrics

__all__ = ["WebhookReceiver"]

log = structlog.get_logger(__name__)


def _lag(payload: dict[str, Any]) -> float | None:
    stamp = payload.get("completed_at") or payload.get("failed_at")
    try:
        return max(0.0, time.time() - dt.datetime.fromisoformat(str(stamp)).timestamp())
    except (TypeError, ValueError):
        return None


def _problem(payload: Any) -> str:
    """What is wrong with a webhook body, naming the field ("" when nothing is)."""
    if not isinstance(payload, dict):
        return "body must be a JSON object with task_id"
    task_id = payload.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
        return f"task_id must be a non-empty string, got {type(task_id).__name__}"
    if not isinstance(payload.get("result") or {}, dict):
        return f"result must be an object, got {type(payload['result']).__name__}"
    return ""


class WebhookReceiver:
    """The webhook endpoint.

    Args:
        store: where a job's result is stored (and its waiter woken, on any instance).
        secret: the deployment's webhook key (tokens are HMACs under it).
        metrics: webhook counters and the completion-to-receipt lag.
        audit: the security audit (refusals).
    """

    def __init__(self, store: WorkflowStore, secret: bytes, metrics: Metrics, audit: SecurityAudit) -> None:
        self._store = store
        self._secret = secret
        self._metrics = metrics
        self._audit = audit

    async def receive(self, request: Request) -> Response:
        """Handle one webhook."""
        q = request.query_params
        job = JobRef(q.get("wid", ""), q.get("step", ""))
        nonce, token = q.get("n", ""), q.get("token", "")
        source = request.client.host if request.client else "?"
        if not job.token_matches(self._secret, nonce, token):
            self._metrics.webhooks.labels("refused").inc()
            log.warning("webhook.refused", source=source, workflow_id=job.workflow_id)
            return JSONResponse({"error": "invalid webhook token"}, status_code=401)
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        problem = _problem(payload)
        if problem:
            self._metrics.webhooks.labels("malformed").inc()
            return JSONResponse({"error": problem}, status_code=400)
        with tracing.span("webhook task-service", kind=SpanKind.SERVER, parent=await self._trace(job, payload),
                          attributes={"mo.workflow_id": job.workflow_id, "mo.job.step_key": job.key,
                                      "mo.task_id": str(payload["task_id"])}):  # fmt: skip
            return await self._accept(job, nonce, str(payload["task_id"]), payload, source)

    async def _trace(self, job: JobRef, payload: dict[str, Any]) -> Any:
        """The span a webhook continues: the job's (its context went out in the job's metadata, which the service
        echoes on success), else the production's (a failure's webhook carries no metadata)."""
        if not tracing.enabled():
            return None
        sent = tracing.context_of(
            payload.get("metadata") if isinstance(payload.get("metadata"), dict) else None
        )
        if sent is not None:
            return sent
        try:
            return tracing.context_of(await self._store.trace_of(job.workflow_id))
        except IntegrityError:
            return None

    async def _accept(
        self, job: JobRef, nonce: str, task_id: str, payload: dict[str, Any], source: str
    ) -> Response:
        wid, step = job.workflow_id, job.step
        try:
            entry = await self._store.job_submission(wid, job.key)
        except IntegrityError as exc:
            return await self._refuse(job, source, "refused_integrity", 409, f"integrity_error: {exc}")
        if entry is None or entry[0] != nonce:
            # A token of a submission that is no longer (or never was) this step's job.
            return await self._refuse(job, source, "refused_unknown_job", 404, f"workflow {wid!r} has no job "
                                      "awaiting a webhook for this step and token", task_id=task_id)  # fmt: skip
        _, job_id, settled = entry
        if job_id and job_id != task_id:
            return await self._refuse(job, source, "refused_other_job", 409, f"this token is for step {step!r} "
                                      f"of workflow {wid!r}, whose job is not {task_id!r}", task_id=task_id)  # fmt: skip
        outcome = outcome_of_webhook(payload)
        # The submission it answers is kept with it: a step that lost a submit's answer finds its own job by it.
        stored = await self._store.put_job_result(wid, job.key, task_id, {**outcome, "submission": nonce})
        lag = _lag(payload)
        if lag is not None:
            self._metrics.webhook_lag.observe(lag)
        label = "duplicate" if not stored else "late" if settled else "accepted"
        self._metrics.webhooks.labels(label).inc()
        log.info("webhook.received", workflow_id=wid, step=step, task_id=task_id, outcome=label)
        if stored and settled:
            # Its step has moved on; what the service says now is still worth showing (a late reason).
            await self._store.update(wid, {}, event="job.reported_late", event_data={
                "step": step, "task_id": task_id, "status": outcome["status"],
                "reason": outcome["error"], "result_url": outcome.get("result_url")})  # fmt: skip
        return JSONResponse({"ok": True, "duplicate": not stored, "late": settled})

    async def _refuse(
        self, job: JobRef, source: str, outcome: str, status: int, message: str, **data: Any
    ) -> Response:
        wid, step = job.workflow_id, job.step
        self._metrics.webhooks.labels(outcome).inc()
        log.warning("webhook.refused", source=source, workflow_id=wid, step=step, outcome=outcome, **data)
        await self._audit.record(
            "webhook.refused", source=source, workflow_id=wid, step=step, outcome=outcome, **data
        )
        return JSONResponse({"error": message}, status_code=status)
