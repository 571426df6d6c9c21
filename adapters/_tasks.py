"""Task Service client (GPU media generation): submit, list, cancel; errors mapped to our tree.

The contract is docs/contracts/task-service.md (read from jomapps/celery-redis and run against it). What
this client accounts for:

- Submitting is not idempotent there (metadata and ``X-Correlation-ID`` are only echoed): a submit whose
  answer was lost after sending (timeout, dropped connection, a 500: the route enqueues the job before it
  saves its record; a gateway's 504) raises `OutcomeUnknownError`, which nobody repeats blindly;
  `tasks_since` lists what the project got since, for the caller to reconcile. A submit that never reached
  it (connect error, 502, 503, 429) is an ordinary `TransientError`.
- Its uvicorn closes an idle keep-alive connection after 5 s: a GET that meets a connection dropped under
  it is sent once more on a fresh one (the assembly also expires pooled connections before 5 s).
- The project's task list tells that a job ended, never its result or reason (rows carry neither); only
  the webhook does. The status route always answers 404 after ~6 s ("unknown", never "failed").
- Cancelling a completed or failed task answers 500 (read as "already finished"); cancelling a running one
  answers 200 and it completes anyway.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import structlog

from adapters.errors import OutcomeUnknownError, PermanentError, TransientError

__all__ = [
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "TASK_DATA_KEYS",
    "TaskServiceClient",
    "task_created_at",
    "translate_http_error",
]

log = structlog.get_logger(__name__)

_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# The keys our graphs send for each task type (the service requires none: a missing key takes its default).
TASK_DATA_KEYS: dict[str, tuple[str, ...]] = {
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
# The service's own priorities (`TaskPriority`): stored with the task, never passed to its queue.
PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 1, 2, 3
# A connection the server closed under a request (its 5 s keep-alive): safe to resend a GET once.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)
# Failures before anything was sent: a submit may be repeated after these.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Answers after which a submitted job may exist: the app's own 500 (its submit route queues the job, then
# saves its record) and a gateway's timeout. A 502/503 (nobody home) or a 429 did not reach it.
_MAYBE_DONE = frozenset({500, 504})


def translate_http_error(service: str, exc: Exception) -> Exception:
    """Map an httpx failure to TransientError (retry) or PermanentError (do not)."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        try:
            body = exc.response.json()
            detail = body.get("error") or body.get("message") or body.get("detail") or body
        except ValueError:
            detail = exc.response.text[:200]
        msg = f"{service} answered {code} for {exc.request.method} {exc.request.url.path}: {detail}"
        if code == 429 or code >= 500:
            return TransientError(msg)
        return PermanentError(msg)
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return TransientError(f"{service} unreachable: {type(exc).__name__}: {exc}")
    return exc


def task_created_at(row: dict[str, Any]) -> float | None:
    """A task row's ``created_at`` as epoch seconds (the service writes naive UTC); None when unreadable."""
    try:
        stamp = dt.datetime.fromisoformat(str(row.get("created_at")))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _shape_problem(task_type: str, data: dict[str, Any]) -> str:
    """What in `data` the service would misread ("" when nothing): it validates none of it itself."""
    if task_type == "evaluate_department":
        gather = data.get("gather_data")
        if not isinstance(gather, list) or not all(isinstance(item, dict) for item in gather):
            return "gather_data must be a list of objects ({content, summary, context}); the service calls .get on each item"
    for params in ("audio_params", "video_params"):
        p = data.get(params)
        if isinstance(p, dict) and "seconds" in p:
            return f"{params}.seconds is ignored by the service (it reads duration, default 30)"
    return ""


class TaskServiceClient:
    """Client of the Task Service.

    Args:
        base_url: the service root (``/api/v1`` is appended).
        api_key: sent as ``X-API-Key``; never logged.
        http: an ``httpx.AsyncClient`` to use (tests inject respx-mocked or MockTransport clients).
        timeout: per-request timeout in seconds.
    """

    service = "task-service"

    def __init__(
        self, base_url: str, api_key: str, *, http: httpx.AsyncClient | None = None, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._http = http or httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(keepalive_expiry=4.0))
        self._timeout = timeout
        self.resent_after_drop = 0

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a GET whose pooled connection was closed under it is sent once more."""
        headers = {"X-API-Key": self._key, **kwargs.pop("headers", {})}
        url = f"{self.base_url}/api/v1{path}"
        for attempt in (1, 2):
            try:
                resp = await self._http.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
            except _DROPPED as exc:
                if method != "GET" or attempt == 2:
                    raise
                self.resent_after_drop += 1
                log.info("task_service.resent_after_drop", path=path, error=f"{type(exc).__name__}: {exc}")
                continue
            resp.raise_for_status()
            return resp
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._send(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise translate_http_error(self.service, exc) from exc

    @staticmethod
    def validate(project_id: str, task_type: str, task_data: dict[str, Any]) -> None:
        """Refuse what the service would refuse, or silently misread, before sending it.

        Raises:
            PermanentError: the project id, task type or task data do not fit the contract.
        """
        if not _PROJECT_RE.match(project_id):
            msg = f"project_id {project_id!r} must match ^[A-Za-z0-9_-]+$ and be at most 100 characters"
            raise PermanentError(msg)
        if task_type not in TASK_DATA_KEYS:
            msg = f"task_type {task_type!r} is not accepted; use one of {sorted(TASK_DATA_KEYS)}"
            raise PermanentError(msg)
        missing = [k for k in TASK_DATA_KEYS[task_type] if k not in task_data]
        if missing:
            msg = f"task_data for {task_type} lacks {missing}"
            raise PermanentError(msg)
        problem = _shape_problem(task_type, task_data)
        if problem:
            msg = f"task_data for {task_type}: {problem}"
            raise PermanentError(msg)

    async def submit(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        idempotency_key: str,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        priority: int = PRIORITY_NORMAL,
        correlation_id: str = "",
    ) -> dict[str, Any]:
        """Submit a task; returns the service's answer (``task_id``, ``status``, ...).

        `idempotency_key` travels in the metadata (echoed in the webhook); the service does not read it.

        Raises:
            PermanentError: refused (4xx) or refused here before sending.
            TransientError: nothing was sent (the service is unreachable), or it answered 429.
            OutcomeUnknownError: sent, and the answer lost, a 500 or a 504: a job may exist; reconcile first.
        """
        self.validate(project_id, task_type, task_data)
        body: dict[str, Any] = {
            "project_id": project_id,
            "task_type": task_type,
            "priority": priority,
            "task_data": task_data,
            "metadata": {**(metadata or {}), "idempotency_key": idempotency_key},
        }
        if callback_url:
            body["callback_url"] = callback_url
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else {}
        try:
            resp = await self._send("POST", "/tasks/submit", json=body, headers=headers)
        except _NOT_SENT as exc:
            raise translate_http_error(self.service, exc) from exc
        except httpx.HTTPStatusError as exc:
            translated = translate_http_error(self.service, exc)
            if exc.response.status_code in _MAYBE_DONE:
                raise OutcomeUnknownError(f"{translated} (a job may have been created)") from exc
            raise translated from exc
        except httpx.HTTPError as exc:
            msg = f"{self.service} submit of {task_type} sent, answer lost: {type(exc).__name__}: {exc}"
            raise OutcomeUnknownError(msg) from exc
        data: dict[str, Any] = resp.json()
        return data

    async def project_tasks(
        self, project_id: str, *, status: str | None = None, task_type: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Every task of the project (all pages, newest first), statuses only."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            data = await self.list_page(
                project_id, page=page, limit=limit, status=status, task_type=task_type
            )
            out += data.get("tasks", [])
            pages = int(data.get("pagination", {}).get("total_pages", 1) or 1)
            if page >= pages:
                return out
            page += 1

    async def list_page(
        self,
        project_id: str,
        *,
        page: int,
        limit: int = 100,
        status: str | None = None,
        task_type: str | None = None,
    ) -> dict[str, Any]:
        """One page of the project's task list as the service answered it (``tasks``, ``pagination``),
        filtered by `status` and `task_type` when given."""
        params: dict[str, Any] = {"page": page, "limit": limit}
        if status:
            params["status"] = status
        if task_type:
            params["task_type"] = task_type
        data: dict[str, Any] = (
            await self._request("GET", f"/projects/{project_id}/tasks", params=params)
        ).json()
        return data

    async def tasks_since(self, project_id: str, task_type: str, since: float) -> list[dict[str, Any]]:
        """The project's tasks of `task_type` created at or after `since` (epoch seconds; an unreadable
        ``created_at`` counts as recent)."""
        rows = await self.project_tasks(project_id, task_type=task_type)
        return [r for r in rows if (task_created_at(r) or since) >= since]

    async def task_status(self, task_id: str) -> dict[str, Any] | None:
        """The documented status route; None when it answers 404 (as the current build always does, ~6 s late)."""
        try:
            return dict((await self._request("GET", f"/tasks/{task_id}/status")).json())
        except PermanentError as exc:
            if " 404 " in str(exc):
                return None
            raise

    async def find(self, project_id: str, task_id: str) -> dict[str, Any] | None:
        """The task's row in the project's task list, or None if the service does not know it."""
        for row in await self.project_tasks(project_id):
            if row.get("task_id") == task_id:
                return row
        return None

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Ask the service to cancel a task.

        A completed or failed task answers 500 there: reported here as ``{"status": "finished"}``. A 200
        ("cancelled") does not stop a task a worker already runs: it completes and sends its webhook.
        """
        try:
            return dict((await self._request("DELETE", f"/tasks/{task_id}")).json())
        except TransientError as exc:
            if " 500 " in str(exc):
                return {"task_id": task_id, "status": "finished", "message": "already finished"}
            raise

    async def healthy(self) -> bool:
        """True when the health route answers 2xx."""
        try:
            resp = await self._http.get(f"{self.base_url}/health", timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return resp.is_success
