"""STAND-IN for the platform's Task Service (jomapps/celery-redis @ 56b07f3), for the demo and tests.

Speaks docs/contracts/task-service.md field for field, with the real build's timing and defects (each one
switchable; all on by default, so the sandbox, the demo and the tests meet what the real service does):

- A job's stored status flips `webhook_delay` seconds (the real build: ~6 s) **before** its webhook is
  sent; the project's task list carries the status only (``completed_at`` and ``result_url`` null, no
  result, no error). Only the webhook tells the media URL, the rating or the reason.
- Results are the real build's per type (``image_url``/``thumbnail_url``; ``audio_url``/``preview_url``/
  ``duration``; ``video_url``; an evaluation's ``rating`` 0-100 with ``evaluation_result``, ``issues``...).
- ``evaluate_department`` fails unless ``gather_data`` is a list of objects (``'str' object has no attribute
  'get'``); an empty list rates 0 at once and its row stays ``processing`` for good (`stuck_rows`: the job
  finished before the submit saved its record).
- ``generate_video`` always fails: ``'Context' object has no attribute 'started_at'`` (`video_always_fails`).
- Webhooks: 3 tries at 0, +1, +2 s on any non-2xx answer or connection error, a new connection each,
  30 s timeout, no auth; ``metadata`` echoed when the submit had some.
- The status route answers 404 after `webhook_delay` (400 for a non-UUID); cancelling a completed or failed
  task answers 500 ``Failed to cancel task: ``; a running one answers 200 and completes anyway; an unknown
  id 200; a queued one (no free worker slot, `concurrency`) never runs and its row stays ``processing``.
- 401 for a missing or a wrong key; no idempotency; uvicorn's 5 s keep-alive (the serving default).

Media are small real files (PNG, WAV, JSON) served at ``/media`` so the board can show them; the real
build answers placeholder URLs. Extra routes under ``/sandbox/`` (not part of the contract) read counters
and switch chaos on: latency, failure rate, an outage answering 503 (the real build has no such answer),
submits whose answer is lost after the job was made, and a restart that loses every task
(``{"restart": true}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.sandbox._task_requests import (
    PROJECT_RE,
    REJECTED_TYPES,
    ROW,
    error,
    invalid,
    is_uuid,
    now,
    problem,
    stamp,
    validate,
)
from server.sandbox._task_results import JobFailure, evaluation, media_result, traceback_of

__all__ = ["TaskServiceStandIn"]

_QUEUED = "Task was queued and has been revoked"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The webhooks' TLS context (the default one), built once."""
    return ssl.create_default_context()


@dataclass
class TaskServiceStandIn:
    """The Task Service stand-in: a Starlette app plus its in-memory task table.

    Args:
        media_dir: where result files are written (served at ``/media``).
        api_key: the key every route but health requires in ``X-API-Key``.
        latency: seconds a job works before its status flips.
        webhook_delay: seconds between the status flip and the first webhook try (the real build: ~6 s;
            also how long the status route takes to answer 404).
        video_always_fails: mirror the real build's failing ``generate_video``.
        stuck_rows: mirror the submit/complete race (an instant job's row stays ``processing``).
        concurrency: worker slots (0: unlimited); a slot is held through the webhook delay, as there.
        failure_rate: chance in [0, 1] that a job fails, and half of it that a submit answers 500 (chaos).
        lose_answers: the next N submits make their job, then answer 500 (as the real route does when its
            record cannot be saved after the job was queued).
        refuse_submits: the next N submits answer 500 without making a job.
        outage: every route answers 503 (chaos).
        public_url: base URL of the media links (set once the port is known).
    """

    media_dir: Path
    api_key: str = "sandbox-task-key"
    latency: float = 0.2
    webhook_delay: float = 6.0
    video_always_fails: bool = True
    stuck_rows: bool = True
    concurrency: int = 0
    failure_rate: float = 0.0
    lose_answers: int = 0
    refuse_submits: int = 0
    outage: bool = False
    public_url: str = ""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    submits_by_key: dict[str, int] = field(default_factory=dict)
    webhooks_sent: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _bg: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None

    @classmethod
    def without_defects(cls, media_dir: Path, **kw: Any) -> TaskServiceStandIn:
        """A stand-in whose jobs report status and webhook together, video works and no row gets stuck."""
        return cls(media_dir, webhook_delay=0.0, video_always_fails=False, stuck_rows=False, **kw)

    async def aclose(self) -> None:
        """Stop the jobs still working or delivering (after the app stopped serving)."""
        for task in list(self._bg):
            task.cancel()
        for task in list(self._bg):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def app(self) -> Starlette:
        """The ASGI app."""
        self.media_dir.mkdir(parents=True, exist_ok=True)
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/api/v1/health", self._health),
                Route("/api/v1/tasks/submit", self._submit, methods=["POST"]),
                Route("/api/v1/tasks/{task_id}/status", self._status),
                Route("/api/v1/tasks/{task_id}", self._cancel, methods=["DELETE"]),
                Route("/api/v1/projects/{project_id}/tasks", self._project_tasks),
                Route("/sandbox/stats", self._stats),
                Route("/sandbox/jobs", self._jobs),
                Route("/sandbox/chaos", self._chaos, methods=["POST"]),
                Mount("/media", app=StaticFiles(directory=str(self.media_dir)), name="media"),
            ]
        )

    def _auth(self, request: Request) -> Response | None:
        if self.outage:
            return error(503, "Service unavailable (sandbox outage)")
        key = request.headers.get("x-api-key")
        if not key:
            return error(401, "API key required in X-API-Key header")
        if key != self.api_key:
            return error(401, "Invalid API key")
        return None

    async def _health(self, request: Request) -> Response:
        if self.outage:
            return error(503, "unhealthy")
        return JSONResponse(
            {"status": "healthy", "app": "AI Movie Platform - Task Service API", "timestamp": stamp()}
        )

    # -- submit -------------------------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return invalid(problem("json_invalid", ["body", 0], "JSON decode error", {}))
        if not isinstance(body, dict):
            return invalid(
                problem("model_attributes_type", ["body"], "Input should be a valid dictionary", body)
            )
        problems = validate(body)
        if problems:
            return invalid(*problems)
        if body["task_type"] in REJECTED_TYPES:
            return error(400, f"Unsupported task type: TaskType.{body['task_type'].upper()}")
        if self.refuse_submits > 0 or (self.failure_rate and random.random() < self.failure_rate / 2):
            self.refuse_submits = max(0, self.refuse_submits - 1)
            return error(500, "Internal server error (sandbox chaos)")
        task = self._enqueue(body)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return JSONResponse({"error": "Internal server error", "message": "An unexpected error occurred",
                                 "timestamp": stamp()}, status_code=500)  # fmt: skip
        return JSONResponse(
            {"task_id": task["task_id"], "status": "processing", "project_id": task["project_id"],
             "estimated_duration": 300, "queue_position": 1, "created_at": task["created_at"]},
            status_code=201,
        )  # fmt: skip

    def _enqueue(self, body: dict[str, Any]) -> dict[str, Any]:
        task_id = str(uuid.uuid4())
        metadata = body.get("metadata") or {}
        idem = str(metadata.get("idempotency_key", "")) if isinstance(metadata, dict) else ""
        if idem:  # counted to show duplicates; the real build never reads it
            self.submits_by_key[idem] = self.submits_by_key.get(idem, 0) + 1
        task: dict[str, Any] = {
            "task_id": task_id, "project_id": body["project_id"].strip(), "task_type": body["task_type"],
            "status": "processing", "priority": body.get("priority", 2), "task_data": body["task_data"],
            "callback_url": body.get("callback_url"), "metadata": metadata if isinstance(metadata, dict) else {},
            "created_at": now().replace(tzinfo=None).isoformat(), "completed_at": None, "result_url": None,
            "result": None, "error": None, "ended": False, "revoked": False,
        }  # fmt: skip
        self.tasks[task_id] = task
        bg = asyncio.get_running_loop().create_task(self._work(task))
        self._bg.add(bg)
        bg.add_done_callback(self._bg.discard)
        return task

    # -- the worker ---------------------------------------------------------------------------

    async def _work(self, task: dict[str, Any]) -> None:
        if self._slots is None and self.concurrency > 0:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots or contextlib.nullcontext():
            if task["revoked"]:
                return  # revoked while queued: never runs, no webhook; its row stays "processing"
            payload = await self._run(task)
            if self.webhook_delay:  # the real worker tries to reach its Brain in between (~6 s)
                await asyncio.sleep(self.webhook_delay)
            if task["callback_url"]:
                await self._deliver(task["callback_url"], payload)

    async def _run(self, task: dict[str, Any]) -> dict[str, Any]:
        data = task["task_data"]
        instant = task["task_type"] == "evaluate_department" and data.get("gather_data", []) == []
        if not instant:
            await asyncio.sleep(self.latency)
        base = {"task_id": task["task_id"], "project_id": task["project_id"]}
        try:
            result = self._produce(task)
        except JobFailure as exc:
            task.update(ended=True, error=str(exc), completed_at=stamp())
            if not (instant and self.stuck_rows):
                task["status"] = "failed"
            payload = {
                **base,
                "status": "failed",
                "error": str(exc),
                "failed_at": stamp(),
                "traceback": traceback_of(exc),
            }
        else:
            task.update(ended=True, result=result, completed_at=stamp())
            if not (instant and self.stuck_rows):  # finished before the submit saved "processing" over it
                task["status"] = "completed"
            payload = {**base, "status": "completed", "result": result, "completed_at": stamp()}
        if task["metadata"]:
            payload["metadata"] = task["metadata"]
        return payload

    def _produce(self, task: dict[str, Any]) -> dict[str, Any]:
        if self.failure_rate and random.random() < self.failure_rate:
            msg = "CUDA error: out of memory (sandbox chaos)"
            raise JobFailure(msg)
        if task["task_type"] == "evaluate_department":
            return evaluation(task["task_data"])
        return media_result(self.media_dir, self.public_url, task, video_fails=self.video_always_fails)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        started = asyncio.get_running_loop().time()
        for delay in (0.0, 1.0, 2.0):
            await asyncio.sleep(delay)
            at = round(asyncio.get_running_loop().time() - started, 3)
            try:
                # a new connection per try, as there (a client of its own; its TLS context is built once: loading
                # the CA store cost ~26 ms of CPU per webhook)
                async with httpx.AsyncClient(timeout=30.0, verify=_tls_context()) as client:
                    r = await client.post(
                        url, json=payload, headers={"User-Agent": "AI-Movie-Task-Service/1.0"}
                    )
            except httpx.HTTPError as exc:
                self.deliveries.append({"task_id": payload["task_id"], "at": at, "error": type(exc).__name__})
                continue
            finally:
                self.webhooks_sent += 1
            self.deliveries.append({"task_id": payload["task_id"], "at": at, "status": r.status_code})
            if r.status_code in (200, 201, 202, 204):
                return

    # -- other routes -------------------------------------------------------------------------

    async def _status(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        if not is_uuid(request.path_params["task_id"]):
            return error(400, "Invalid task ID format. Must be a valid UUID.")
        await asyncio.sleep(self.webhook_delay)  # it tries the Brain first, then fails to build its answer
        return error(404, "Task not found or status unavailable")

    async def _cancel(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        task_id = request.path_params["task_id"]
        if not is_uuid(task_id):
            return error(400, "Invalid task ID format. Must be a valid UUID.")
        task = self.tasks.get(task_id)
        if task is not None and task["ended"]:
            return error(500, "Failed to cancel task: ")
        previous, message = "queued", _QUEUED
        if task is not None and task["revoked"]:
            previous, message = "cancelled", "Task was already cancelled"
        elif task is not None:
            task["revoked"] = True  # a job a worker runs completes anyway; a queued one never runs
        return JSONResponse({"task_id": task_id, "status": "cancelled", "message": message,
                             "previous_state": previous, "cancelled_at": stamp()})  # fmt: skip

    async def _project_tasks(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        pid, q = request.path_params["project_id"], request.query_params
        problems = []
        page, limit = q.get("page", "1"), q.get("limit", "20")
        if not page.isdigit() or int(page) < 1:
            problems.append(
                problem(
                    "greater_than_equal",
                    ["query", "page"],
                    "Input should be greater than or equal to 1",
                    page,
                )
            )
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            problems.append(
                problem(
                    "less_than_equal", ["query", "limit"], "Input should be less than or equal to 100", limit
                )
            )
        if problems:
            return invalid(*problems)
        if not PROJECT_RE.match(pid):
            return error(
                400, "Invalid project ID format. Only alphanumeric, underscore, and dash characters allowed."
            )
        rows = [t for t in self.tasks.values() if t["project_id"] == pid]
        for name in ("status", "task_type"):
            if q.get(name):
                rows = [t for t in rows if t[name] == q[name]]
        rows.sort(key=lambda t: t["created_at"], reverse=True)
        p, n, total = int(page), int(limit), len(rows)
        shown = [{k: (t[k] if k not in ("completed_at", "result_url") else None) for k in ROW}
                 for t in rows[(p - 1) * n : p * n]]  # fmt: skip
        return JSONResponse({"tasks": shown, "pagination": {"page": p, "limit": n, "total": total,
                                                            "total_pages": -(-total // n)}})  # fmt: skip

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(
            {"tasks": len(self.tasks),
             "by_status": {s: sum(1 for t in self.tasks.values() if t["status"] == s)
                           for s in ("processing", "completed", "failed")},
             "submits_by_key": self.submits_by_key, "webhooks_sent": self.webhooks_sent}
        )  # fmt: skip

    async def _jobs(self, request: Request) -> Response:
        """The jobs one workflow submitted (``?workflow_id=``), with their metadata and times (``completed_at``
        here is when the job ended, which the contract's rows never tell)."""
        wid = request.query_params.get("workflow_id", "")
        keys = ("task_id", "task_type", "status", "created_at", "completed_at", "metadata")
        rows = [
            {k: t[k] for k in keys} for t in self.tasks.values() if t["metadata"].get("workflow_id") == wid
        ]
        return JSONResponse({"workflow_id": wid, "jobs": rows})

    def restart(self) -> int:
        """Lose every task, as a restarted service without persistence would: no row, no webhook. Returns how
        many were lost (the submit counters are kept: they are the tests' record of what was sent)."""
        for bg in list(self._bg):
            bg.cancel()
        lost = len(self.tasks)
        self.tasks.clear()
        return lost

    async def _chaos(self, request: Request) -> Response:
        body = await request.json()
        if body.get("restart"):
            self.restart()
        for name in ("latency", "webhook_delay", "failure_rate", "lose_answers", "refuse_submits", "outage",
                     "video_always_fails", "stuck_rows"):  # fmt: skip
            if name in body:
                setattr(self, name, type(getattr(self, name))(body[name]))
        return JSONResponse({"latency": self.latency, "webhook_delay": self.webhook_delay,
                             "failure_rate": self.failure_rate, "outage": self.outage})  # fmt: skip
