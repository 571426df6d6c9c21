"""STAND-IN for the Auto-Movie app (Next.js + PayloadCMS): v1 project routes and Payload login/PATCH.

Speaks shared/contracts/auto-movie.md and persists projects to a JSON file. Payload tokens expire
after ``token_ttl`` seconds so clients exercise re-login.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["AutoMovieStandIn"]

_ROUTE_GENRES = {"action", "comedy", "drama", "scifi", "fantasy", "horror", "documentary", "animation"}
_STATUSES = {"concept", "pre-production", "production", "post-production", "completed", "on-hold"}


def _iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _err(status: int, error: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


@dataclass
class AutoMovieStandIn:
    """The Auto-Movie stand-in.

    Projects live in memory and are written to `store_file` at most twice a second (and by `flush()`),
    so a thousand productions writing progress do not rewrite the whole file on every request.

    Args:
        store_file: JSON file holding the projects.
        api_token: bearer token of the v1 API.
        email, password: the Payload user.
        token_ttl: seconds a Payload token is valid.
    """

    store_file: Path
    api_token: str = "sandbox-auto-movie-token"
    email: str = "orchestrator@sandbox.local"
    password: str = "sandbox-password"
    token_ttl: float = 3600.0
    tokens: dict[str, float] = field(default_factory=dict)
    patches: int = 0
    _projects: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _flush_pending: bool = field(default=False, repr=False)

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._projects is None:
            self._projects = json.loads(self.store_file.read_text()) if self.store_file.exists() else {}
        return self._projects

    def _save(self, projects: dict[str, dict[str, Any]]) -> None:
        self._projects = projects
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_later(0.5, self.flush)

    def flush(self) -> None:
        """Write the projects to the file now."""
        self._flush_pending = False
        if self._projects is None:
            return
        self.store_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.store_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._projects, indent=2))
        tmp.replace(self.store_file)

    def seed(self, project_id: str, title: str, genre: str = "sci-fi", episodes: int = 1) -> dict[str, Any]:
        """Create a project if missing (the collection's genre spelling, as Payload stores it)."""
        projects = self._load()
        if project_id not in projects:
            projects[project_id] = self._new(
                project_id, {"title": title, "genre": genre, "episodeCount": episodes}
            )
            self._save(projects)
        return projects[project_id]

    @staticmethod
    def _new(pid: str, body: dict[str, Any]) -> dict[str, Any]:
        now = _iso()
        return {
            "id": pid,
            "title": body["title"],
            "description": body.get("description", ""),
            "genre": body["genre"],
            "status": "concept",
            "episodeCount": body["episodeCount"],
            "targetAudience": body.get("targetAudience", "general"),
            "createdBy": {"id": "u1", "name": "Sandbox Producer", "email": "producer@sandbox.local"},
            "collaborators": [],
            "styleReferences": [],
            "projectSettings": body.get("projectSettings")
            or {"aspectRatio": "16:9", "episodeDuration": 10, "qualityTier": "standard"},
            "progress": {"currentPhase": "story_development", "completedSteps": [], "overallProgress": 0},
            "createdAt": now,
            "updatedAt": now,
        }

    def _bearer_ok(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return _err(401, "Unauthorized")
        return None

    async def _list(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        q = request.query_params
        rows = list(self._load().values())
        for key in ("status", "genre"):
            if q.get(key):
                rows = [p for p in rows if p.get(key) == q[key]]
        page, limit = int(q.get("page", 1)), min(int(q.get("limit", 10)), 50)
        fields = (
            "id",
            "title",
            "description",
            "genre",
            "status",
            "episodeCount",
            "targetAudience",
            "createdAt",
            "updatedAt",
        )
        projects = [
            {**{k: p.get(k) for k in fields},
             "progress": {k: p["progress"].get(k) for k in ("currentPhase", "overallProgress")}}
            for p in rows[(page - 1) * limit : page * limit]
        ]  # fmt: skip
        total = len(rows)
        return JSONResponse(
            {"projects": projects,
             "pagination": {"page": page, "limit": limit, "total": total, "pages": -(-total // limit)}}
        )  # fmt: skip

    async def _create(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        body = await request.json()
        problems = []
        if not body.get("title"):
            problems.append("title is required")
        if body.get("genre") not in _ROUTE_GENRES:
            problems.append(f"genre must be one of {sorted(_ROUTE_GENRES)}")
        if not isinstance(body.get("episodeCount"), int) or not 1 <= body["episodeCount"] <= 50:
            problems.append("episodeCount must be 1-50")
        if problems:
            return _err(400, "Validation failed", problems)
        projects = self._load()
        pid = uuid.uuid4().hex[:24]
        projects[pid] = self._new(pid, body)
        self._save(projects)
        return JSONResponse(projects[pid], status_code=201)

    async def _get(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        project = self._load().get(request.path_params["pid"])
        return JSONResponse(project) if project else _err(404, "Project not found")

    async def _put(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        projects = self._load()
        project = projects.get(request.path_params["pid"])
        if project is None:
            return _err(404, "Project not found")
        body = await request.json()
        if "status" in body and body["status"] not in _STATUSES:
            return _err(400, "Validation failed", [f"status must be one of {sorted(_STATUSES)}"])
        for key in ("title", "description", "status", "projectSettings"):  # progress is ignored here
            if key in body:
                project[key] = body[key]
        project["updatedAt"] = _iso()
        self._save(projects)
        return JSONResponse(project)

    async def _delete(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        projects = self._load()
        if projects.pop(request.path_params["pid"], None) is None:
            return _err(404, "Project not found")
        self._save(projects)
        return Response(status_code=204)

    async def _login(self, request: Request) -> Response:
        body = await request.json()
        if body.get("email") != self.email or body.get("password") != self.password:
            return JSONResponse(
                {"errors": [{"message": "The email or password provided is incorrect."}]}, 401
            )
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_ttl
        return JSONResponse({"message": "Auth Passed", "token": token, "exp": int(self.tokens[token]),
                             "user": {"id": "u-orchestrator", "email": self.email}})  # fmt: skip

    async def _patch(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("JWT ")
        if not auth.startswith("JWT ") or self.tokens.get(token, 0) < time.time():
            return JSONResponse({"errors": [{"message": "You are not allowed to perform this action."}]}, 401)
        projects = self._load()
        project = projects.get(request.path_params["pid"])
        if project is None:
            return JSONResponse({"errors": [{"message": "Not Found"}]}, 404)
        body = await request.json()
        if "progress" in body:
            project["progress"] = {**project.get("progress", {}), **body["progress"]}
        project["updatedAt"] = _iso()
        self._save(projects)
        self.patches += 1
        return JSONResponse({"doc": project, "message": "Updated successfully."})

    def app(self) -> Starlette:
        """The ASGI app (seeds the demo's project on first start)."""
        self.seed("demo-project", "The Lighthouse Map", genre="sci-fi", episodes=1)
        return Starlette(
            routes=[
                Route("/api/v1/projects", self._list, methods=["GET"]),
                Route("/api/v1/projects", self._create, methods=["POST"]),
                Route("/api/v1/projects/{pid}", self._get, methods=["GET"]),
                Route("/api/v1/projects/{pid}", self._put, methods=["PUT"]),
                Route("/api/v1/projects/{pid}", self._delete, methods=["DELETE"]),
                Route("/api/users/login", self._login, methods=["POST"]),
                Route("/api/projects/{pid}", self._patch, methods=["PATCH"]),
            ]
        )
