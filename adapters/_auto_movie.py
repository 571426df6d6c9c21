"""Auto-Movie client: project data (v1 REST) and progress write-back (Payload REST).

Contract: docs/contracts/auto-movie.md (read from jomapps/auto-movie). ``PUT /api/v1/projects/{id}``
ignores ``progress``, so progress goes through Payload: ``POST /api/users/login`` then
``PATCH /api/projects/{id}`` with ``Authorization: JWT <token>``. Payload answers an expired or invalid
token with **403** (not 401): either one logs in again, once.

The v1 routes answer **500** ``Internal server error`` for an unknown or malformed project id (Payload's
``findByID`` throws before the route's 404 branch): a 500 there is read as "no such project", permanent
for that project and not an outage (it is never retried and does not open the breaker). Project ids
are Mongo ObjectIds (24 hex digits); any id is passed through.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from adapters._tasks import translate_http_error
from adapters.errors import PermanentError

__all__ = ["PHASES", "PROJECT_STATUSES", "AutoMovieClient", "normalise_genre"]

PROJECT_STATUSES = ("concept", "pre-production", "production", "post-production", "completed", "on-hold")
PHASES = (
    "story_development",
    "character_creation",
    "visual_design",
    "audio_design",
    "scene_production",
    "post_production",
    "final_assembly",
)
_GENRE_ALIASES = {
    "sci-fi": "scifi",
    "sci fi": "scifi",
    "science fiction": "scifi",
    "science-fiction": "scifi",
    "scifi": "scifi",
    "romcom": "romance",
    "animated": "animation",
    "docu": "documentary",
}
_KNOWN = {
    "action",
    "comedy",
    "drama",
    "scifi",
    "fantasy",
    "horror",
    "documentary",
    "animation",
    "thriller",
    "romance",
}


def normalise_genre(genre: Any) -> str:
    """One vocabulary for both of Auto-Movie's genre lists; unknown genres become "other", never an error."""
    if not isinstance(genre, str) or not genre.strip():
        return "other"
    g = " ".join(genre.strip().lower().replace("_", " ").split())
    g = _GENRE_ALIASES.get(g, g)
    return g if g in _KNOWN else "other"


class AutoMovieClient:
    """Client of the Auto-Movie app.

    Args:
        base_url: the app's root.
        api_token: bearer token of the v1 project API.
        payload_email, payload_password: Payload login used for progress write-back.
        http: injected ``httpx.AsyncClient`` (tests use respx).
    """

    service = "auto-movie"

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str,
        payload_email: str = "",
        payload_password: str = "",
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self._email = payload_email
        self._password = payload_password
        self._jwt: str | None = None
        self._login_lock = asyncio.Lock()
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self.logins = 0

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _send(
        self, method: str, path: str, *, auth: str, correlation_id: str = "", **kw: Any
    ) -> httpx.Response:
        headers = {"Authorization": auth} if auth else {}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        try:
            resp = await self._http.request(method, f"{self.base_url}{path}", headers=headers, **kw)
            resp.raise_for_status()
        except httpx.HTTPStatusError as exc:
            error = translate_http_error(self.service, exc)
            if exc.response.status_code == 500 and path.startswith("/api/v1/projects/"):
                project = path.removeprefix("/api/v1/projects/")
                msg = (f"{error} (the app answers 500 for an unknown or malformed project id: project "
                       f"{project!r} is treated as not found; its ids are Mongo ObjectIds)")  # fmt: skip
                raise PermanentError(msg).about(service=self.service, operation=f"{method} project",
                                                reason="unknown or malformed project id") from exc  # fmt: skip
            raise error from exc
        except httpx.HTTPError as exc:
            raise translate_http_error(self.service, exc) from exc
        return resp

    @staticmethod
    def _normalise(project: dict[str, Any]) -> dict[str, Any]:
        out = dict(project)
        out["genre_raw"] = project.get("genre")
        out["genre"] = normalise_genre(project.get("genre"))
        out.setdefault("projectSettings", {})
        out.setdefault("progress", {})
        return out

    async def get_project(self, project_id: str, *, correlation_id: str = "") -> dict[str, Any]:
        """The project with settings, genre (normalised; the original in ``genre_raw``) and progress."""
        resp = await self._send(
            "GET",
            f"/api/v1/projects/{project_id}",
            auth=f"Bearer {self._token}",
            correlation_id=correlation_id,
        )
        return self._normalise(resp.json())

    async def list_projects(
        self, *, status: str | None = None, page: int = 1, limit: int = 50
    ) -> list[dict[str, Any]]:
        """One page of projects (the API caps ``limit`` at 50)."""
        params: dict[str, Any] = {"page": page, "limit": min(limit, 50)}
        if status:
            params["status"] = status
        resp = await self._send("GET", "/api/v1/projects", auth=f"Bearer {self._token}", params=params)
        return [self._normalise(p) for p in resp.json().get("projects", [])]

    async def update_status(
        self, project_id: str, status: str, *, correlation_id: str = ""
    ) -> dict[str, Any]:
        """Set the project's status (PUT; the route has no PATCH)."""
        if status not in PROJECT_STATUSES:
            msg = f"status {status!r} is not one of {PROJECT_STATUSES}"
            raise PermanentError(msg)
        resp = await self._send(
            "PUT",
            f"/api/v1/projects/{project_id}",
            auth=f"Bearer {self._token}",
            json={"status": status},
            correlation_id=correlation_id,
        )
        return dict(resp.json())

    async def _login(self) -> str:
        async with self._login_lock:
            if self._jwt is None:
                resp = await self._send(
                    "POST",
                    "/api/users/login",
                    auth="",
                    json={"email": self._email, "password": self._password},
                )
                self._jwt = str(resp.json()["token"])
                self.logins += 1
            return self._jwt

    async def write_progress(
        self,
        project_id: str,
        phase: str,
        completed_steps: list[str],
        overall: float,
        *,
        correlation_id: str = "",
    ) -> None:
        """Write progress through Payload's PATCH, logging in (again, once) when the token is refused."""
        if phase not in PHASES:
            msg = f"phase {phase!r} is not one of {PHASES}"
            raise PermanentError(msg)
        body = {"progress": {"currentPhase": phase, "completedSteps": completed_steps,
                             "overallProgress": round(max(0.0, min(100.0, overall)), 1)}}  # fmt: skip
        for attempt in (1, 2):
            token = await self._login()
            try:
                await self._send(
                    "PATCH",
                    f"/api/projects/{project_id}",
                    auth=f"JWT {token}",
                    json=body,
                    correlation_id=correlation_id,
                )
            except PermanentError as exc:
                if (" 403 " in str(exc) or " 401 " in str(exc)) and attempt == 1:
                    self._jwt = None  # Payload answers an expired token with 403: log in again once
                    continue
                raise
            else:
                return
