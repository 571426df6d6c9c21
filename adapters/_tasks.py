"""Task Service client (GPU media generation): submit, poll, cancel; errors mapped to our tree.

The contract is shared/contracts/task-service.md. Known defects handled here: the status route
always answers 404 (read as "unknown", never "failed"), cancelling a finished task answers 500
(read as "already finished"), results are learnt from the webhook or the project's task list.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from adapters.errors import PermanentError, TransientError

__all__ = ["TASK_DATA_KEYS", "TaskServiceClient", "translate_http_error"]

_PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
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
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def fetch_json(self, url: str) -> dict[str, Any]:
        """A JSON document the service published (an evaluation's result_url), over this client's connections.

        Raises:
            TransientError: unreachable, or 429/5xx.
            PermanentError: any other refusal, or not a JSON object.
        """
        try:
            resp = await self._http.get(url, timeout=self._timeout)
            resp.raise_for_status()
            body = resp.json()
        except httpx.HTTPError as exc:
            raise translate_http_error(self.service, exc) from exc
        except ValueError as exc:
            msg = f"{self.service} result at {url} is not JSON: {exc}"
            raise PermanentError(msg) from exc
        if not isinstance(body, dict):
            msg = f"{self.service} result at {url} is not a JSON object"
            raise PermanentError(msg)
        return body

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self._key, **kwargs.pop("headers", {})}
        try:
            resp = await self._http.request(
                method, f"{self.base_url}/api/v1{path}", headers=headers, timeout=self._timeout, **kwargs
            )
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise translate_http_error(self.service, exc) from exc
        return resp

    @staticmethod
    def validate(project_id: str, task_type: str, task_data: dict[str, Any]) -> None:
        """Refuse what the service would refuse, before sending it.

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

    async def submit(
        self,
        project_id: str,
        task_type: str,
        task_data: dict[str, Any],
        *,
        idempotency_key: str,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        priority: int = 1,
        correlation_id: str = "",
    ) -> dict[str, Any]:
        """Submit a task; returns the service's answer (``task_id``, ``status``, ...)."""
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
        resp = await self._request("POST", "/tasks/submit", json=body, headers=headers)
        data: dict[str, Any] = resp.json()
        return data

    async def project_tasks(
        self, project_id: str, *, status: str | None = None, task_type: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Every task of the project (all pages), statuses only."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            params: dict[str, Any] = {"page": page, "limit": limit}
            if status:
                params["status"] = status
            if task_type:
                params["task_type"] = task_type
            data = (await self._request("GET", f"/projects/{project_id}/tasks", params=params)).json()
            out += data.get("tasks", [])
            pages = int(data.get("pagination", {}).get("total_pages", 1) or 1)
            if page >= pages:
                return out
            page += 1

    async def list_page(self, project_id: str, *, page: int, limit: int = 100) -> dict[str, Any]:
        """One page of the project's task list as the service answered it (``tasks``, ``pagination``)."""
        resp = await self._request(
            "GET", f"/projects/{project_id}/tasks", params={"page": page, "limit": limit}
        )
        data: dict[str, Any] = resp.json()
        return data

    async def task_status(self, task_id: str) -> dict[str, Any] | None:
        """The documented status route; None when it answers 404 (as the current build always does)."""
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
        """Cancel a task. A task that already finished answers 500 here: reported as finished."""
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
