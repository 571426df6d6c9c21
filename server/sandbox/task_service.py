"""STAND-IN for the platform's Task Service (GPU media generation), for the demo and tests.

Speaks the contract in shared/contracts/task-service.md, defects included: the status route always
answers 404, cancelling a completed task answers 500, and (configurable, on by default, as on the
current build) ``generate_video`` always fails. Results are small real files (PNG, WAV, JSON) in a
media folder served over HTTP, delivered by webhook with the real service's retry schedule.

Extra routes under ``/sandbox/`` (not part of the contract) let tests read counters and switch
latency, failure rate and an outage on and off, and restart the service losing its tasks
(``{"restart": true}``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import re
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

from server.sandbox._media import write_json, write_png, write_wav

__all__ = ["TaskServiceStandIn"]

_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_DATA_KEYS = {
    "generate_image": ("prompt", "image_params"),
    "generate_video": ("scene_data", "video_params"),
    "process_audio": ("prompt", "audio_params"),
    "evaluate_department": (
        "department_slug",
        "department_number",
        "gather_data",
        "previous_evaluations",
        "threshold",
    ),
}
_REJECTED_TYPES = {"render_animation", "test_prompt", "automated_gather_creation"}


def _iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _error(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg, "message": msg, "timestamp": _iso()}, status_code=status)


@dataclass
class TaskServiceStandIn:
    """The Task Service stand-in: a Starlette app plus its in-memory task table.

    Args:
        media_dir: where result files are written (served at ``/media``).
        api_key: the key every route but health requires in ``X-API-Key``.
        latency: seconds a task takes before it completes.
        failure_rate: chance in [0, 1] that a task fails (reported by webhook, like a GPU error).
        submit_error_rate: chance in [0, 1] that a submit answers 500.
        video_always_fails: mirror the current build's defect.
        public_url: base URL the results' ``result_url`` point at (set once the port is known).
    """

    media_dir: Path
    api_key: str = "sandbox-task-key"
    latency: float = 0.2
    failure_rate: float = 0.0
    submit_error_rate: float = 0.0
    video_always_fails: bool = True
    outage: bool = False
    public_url: str = ""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    submits_by_key: dict[str, int] = field(default_factory=dict)
    webhooks_sent: int = 0
    _bg: set[asyncio.Task[None]] = field(default_factory=set)
    _webhook_client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the webhook client (after the app stopped serving)."""
        if self._webhook_client is not None:
            await self._webhook_client.aclose()
            self._webhook_client = None

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

    # -- helpers ------------------------------------------------------------------------------

    def _auth(self, request: Request) -> Response | None:
        if self.outage:
            return _error(503, "Service unavailable (sandbox outage)")
        key = request.headers.get("x-api-key")
        if not key:
            return _error(401, "Missing API key")
        if key != self.api_key:
            return _error(403, "Invalid API key")
        return None

    # -- routes -------------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        if self.outage:
            return _error(503, "unhealthy")
        return JSONResponse({"status": "healthy", "service": "task-service (sandbox stand-in)"})

    async def _submit(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": [{"msg": "Invalid JSON body", "type": "json_invalid"}]}, 422)
        problems = self._validate(body)
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        if body["task_type"] in _REJECTED_TYPES:
            return _error(400, f"Task type {body['task_type']} is not supported")
        if self.failure_rate and random.random() < self.failure_rate / 2:
            return _error(500, "Internal server error (sandbox chaos)")
        task_id = str(uuid.uuid4())
        idem = str((body.get("metadata") or {}).get("idempotency_key", ""))
        if idem:
            self.submits_by_key[idem] = self.submits_by_key.get(idem, 0) + 1
        task = {
            "task_id": task_id,
            "project_id": body["project_id"],
            "task_type": body["task_type"],
            "status": "processing",
            "priority": body.get("priority", 1),
            "task_data": body.get("task_data") or {},
            "callback_url": body.get("callback_url"),
            "metadata": body.get("metadata") or {},
            "created_at": _iso(),
            "completed_at": None,
            "result_url": None,
            "result": None,
        }
        self.tasks[task_id] = task
        running = len(self._bg)  # jobs being worked on (was a scan of every task ever submitted, per submit)
        bg = asyncio.get_running_loop().create_task(self._work(task_id))
        self._bg.add(bg)
        bg.add_done_callback(self._bg.discard)
        return JSONResponse(
            {
                "task_id": task_id,
                "status": "processing",
                "project_id": body["project_id"],
                "estimated_duration": max(1, round(self.latency)),
                "queue_position": running,
                "created_at": task["created_at"],
            },
            status_code=201,
        )

    def _validate(self, body: Any) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []

        def bad(loc: str, msg: str) -> None:
            problems.append({"loc": ["body", loc], "msg": msg, "type": "value_error"})

        if not isinstance(body, dict):
            return [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]
        pid = body.get("project_id")
        if not isinstance(pid, str) or not _PROJECT_RE.match(pid):
            bad("project_id", "String should match pattern '^[A-Za-z0-9_-]+$' (at most 100 characters)")
        ttype = body.get("task_type")
        if ttype not in _DATA_KEYS and ttype not in _REJECTED_TYPES:
            bad("task_type", f"Input should be one of {sorted(_DATA_KEYS) + sorted(_REJECTED_TYPES)}")
        if body.get("priority", 1) not in (1, 2, 3):
            bad("priority", "Input should be 1, 2 or 3")
        cb = body.get("callback_url")
        if cb is not None and not (isinstance(cb, str) and cb.startswith(("http://", "https://"))):
            bad("callback_url", "callback_url must start with http:// or https://")
        data = body.get("task_data")
        if ttype in _DATA_KEYS:
            if not isinstance(data, dict):
                bad("task_data", "Input should be an object")
            else:
                for k in _DATA_KEYS[ttype]:
                    if k not in data:
                        bad(f"task_data.{k}", "Field required")
        return problems

    async def _work(self, task_id: str) -> None:
        await asyncio.sleep(self.latency)
        task = self.tasks.get(task_id)
        if task is None or task["status"] != "processing":
            return
        fail = (task["task_type"] == "generate_video" and self.video_always_fails) or (
            self.failure_rate and random.random() < self.failure_rate
        )
        if fail:
            task.update(status="failed", completed_at=_iso(), error="Generation failed (GPU worker error)")
            payload = {
                "task_id": task_id,
                "project_id": task["project_id"],
                "status": "failed",
                "error": task["error"],
                "failed_at": task["completed_at"],
                "traceback": "Traceback (most recent call last): ... RuntimeError: CUDA error (sandbox)",
            }
        else:
            result = self._produce(task)
            task.update(
                status="completed", completed_at=_iso(), result=result, result_url=result["media_url"]
            )
            payload = {
                "task_id": task_id,
                "project_id": task["project_id"],
                "status": "completed",
                "result": result,
                "completed_at": task["completed_at"],
                "metadata": task["metadata"],
            }
        if task["callback_url"]:
            await self._deliver(task["callback_url"], payload)

    def _produce(self, task: dict[str, Any]) -> dict[str, Any]:
        folder = self.media_dir / task["project_id"]
        folder.mkdir(parents=True, exist_ok=True)
        tid, ttype, data = task["task_id"], task["task_type"], task["task_data"]
        if ttype == "generate_image":
            path = write_png(folder / f"{tid}.png", str(data.get("prompt")))
            kind = "image/png"
        elif ttype == "process_audio":
            path = write_wav(folder / f"{tid}.wav", str(data.get("prompt")))
            kind = "audio/wav"
        elif ttype == "generate_video":
            path = write_json(folder / f"{tid}.json", {"scene": data.get("scene_data"), "frames": 24})
            kind = "application/json"
        else:
            # Deterministic, and better with each revision, so a revision loop converges as a real one should.
            gather = data.get("gather_data") or {}
            revision = int(gather.get("revision", 0)) if isinstance(gather, dict) else 0
            digest = hashlib.sha256(json.dumps(gather, sort_keys=True, default=str).encode()).digest()
            score = min(99, 55 + 15 * revision + digest[0] % 15)
            path = write_json(
                folder / f"{tid}.json", {"department": data.get("department_slug"), "score": score}
            )
            kind = "application/json"
        rel = path.relative_to(self.media_dir).as_posix()
        out: dict[str, Any] = {
            "media_url": f"{self.public_url}/media/{rel}",
            "media_type": kind,
            "bytes": path.stat().st_size,
            "file": str(path),
        }
        if ttype == "evaluate_department":
            out["score"] = score
        return out

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if self._webhook_client is None:  # one client (connection pool, TLS context) for every delivery
            self._webhook_client = httpx.AsyncClient(timeout=5.0)
        for delay in (0.0, 1.0, 2.0):
            await asyncio.sleep(delay)
            try:
                r = await self._webhook_client.post(
                    url, json=payload, headers={"User-Agent": "AI-Movie-Task-Service/1.0"}
                )
                self.webhooks_sent += 1
                if r.status_code in (200, 201, 202, 204):
                    return
            except httpx.HTTPError:
                continue

    async def _status(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        return _error(404, "Task not found or status unavailable")

    async def _cancel(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return _error(404, "Task not found")
        if task["status"] == "completed":
            return _error(500, "Internal server error: cannot revoke a finished task")
        previous = task["status"]
        task.update(status="cancelled", completed_at=_iso())
        return JSONResponse(
            {
                "task_id": task["task_id"],
                "status": "cancelled",
                "message": "Task cancelled",
                "previous_state": previous,
                "cancelled_at": task["completed_at"],
            }
        )

    async def _project_tasks(self, request: Request) -> Response:
        if denied := self._auth(request):
            return denied
        pid = request.path_params["project_id"]
        q = request.query_params
        rows = [t for t in self.tasks.values() if t["project_id"] == pid]
        if q.get("status"):
            rows = [t for t in rows if t["status"] == q["status"]]
        if q.get("task_type"):
            rows = [t for t in rows if t["task_type"] == q["task_type"]]
        page, limit = int(q.get("page", 1)), min(int(q.get("limit", 20)), 100)
        total = len(rows)
        rows = rows[(page - 1) * limit : page * limit]
        return JSONResponse(
            {
                "tasks": [
                    {
                        k: t[k]
                        for k in (
                            "task_id",
                            "task_type",
                            "status",
                            "created_at",
                            "completed_at",
                            "result_url",
                        )
                    }
                    for t in rows
                ],
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": total,
                    "total_pages": -(-total // limit),
                },
            }
        )

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "tasks": len(self.tasks),
                "by_status": {
                    s: sum(1 for t in self.tasks.values() if t["status"] == s)
                    for s in ("processing", "completed", "failed", "cancelled")
                },
                "submits_by_key": self.submits_by_key,
                "webhooks_sent": self.webhooks_sent,
            }
        )

    async def _jobs(self, request: Request) -> Response:
        """The jobs one workflow submitted (``?workflow_id=``), with their metadata and times."""
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
        for name in ("latency", "failure_rate", "submit_error_rate", "outage", "video_always_fails"):
            if name in body:
                setattr(self, name, type(getattr(self, name))(body[name]))
        return JSONResponse(
            {"latency": self.latency, "failure_rate": self.failure_rate, "outage": self.outage}
        )
