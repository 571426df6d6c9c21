"""STAND-IN for the Auto-Movie app (jomapps/auto-movie @ 89b700c: Next.js + Payload): v1 project routes
and Payload login/PATCH.

Speaks docs/contracts/auto-movie.md, as its code answers: the v1 routes take any ``Bearer`` value (the
app never checks it) and answer **500** ``Internal server error`` for an unknown or malformed project id
and for an invalid status; Payload answers an expired, invalid or missing token with **403**, checks
``progress`` (phase, 0-100), issues 2-hour tokens and locks a user for 10 minutes after 5 failed logins.
Project ids are Mongo ObjectIds. Projects persist to a JSON file; `token_ttl` is short in tests so
clients exercise re-login.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DEMO_PROJECT_ID", "AutoMovieStandIn"]

# The demo's project (a Mongo ObjectId, as the app's ids are).
DEMO_PROJECT_ID = "66f1c0de5a1b2c3d4e5f6a7b"
_PHASES = {"story_development", "character_creation", "visual_design", "audio_design", "scene_production",
           "post_production", "final_assembly"}  # fmt: skip
_LOCK_AFTER, _LOCK_SECONDS = 5, 600.0
_FORBIDDEN = {"errors": [{"message": "You are not allowed to perform this action."}]}
_ROUTE_GENRES = {"action", "comedy", "drama", "scifi", "fantasy", "horror", "documentary", "animation"}
_STATUSES = {"concept", "pre-production", "production", "post-production", "completed", "on-hold"}


def _iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _object_id() -> str:
    """A new Mongo ObjectId: 4 bytes of time, then 8 random bytes."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


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
    token_ttl: float = 7200.0
    tokens: dict[str, float] = field(default_factory=dict)
    failed_logins: int = 0
    locked_until: float = 0.0
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
            "targetAudience": body.get("targetAudience", "family"),
            "createdBy": {"id": "u1", "name": "Sandbox Producer", "email": "producer@sandbox.local"},
            "collaborators": [],
            "styleReferences": [],
            "projectSettings": body.get("projectSettings")
            or {"aspectRatio": "16:9", "episodeDuration": 22, "qualityTier": "standard"},
            "progress": {"currentPhase": "story_development", "completedSteps": [], "overallProgress": 0},
            "createdAt": now,
            "updatedAt": now,
        }

    @staticmethod
    def _bearer_ok(request: Request) -> Response | None:
        # The app only checks the header's form; the token itself is never verified (a TODO there).
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return _err(401, "Authentication required")
        return None

    @staticmethod
    def _shown(p: dict[str, Any]) -> dict[str, Any]:
        """A project as GET /api/v1/projects/{id} builds it, field by field."""
        progress = p.get("progress") or {
            "currentPhase": "concept",
            "completedSteps": [],
            "overallProgress": 0,
        }
        return {**{k: p.get(k) for k in ("id", "title", "description", "genre", "episodeCount", "targetAudience",
                                         "status", "createdBy", "collaborators", "styleReferences")},
                "projectSettings": p.get("projectSettings") or {"aspectRatio": "16:9", "episodeDuration": 30,
                                                                "qualityTier": "standard"},
                "progress": progress, "createdAt": p.get("createdAt"), "updatedAt": p.get("updatedAt")}  # fmt: skip

    async def _list(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        q = request.query_params
        rows = sorted(self._load().values(), key=lambda p: str(p.get("createdAt")), reverse=True)
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
             "progress": {"currentPhase": (p.get("progress") or {}).get("currentPhase") or "concept",
                          "overallProgress": (p.get("progress") or {}).get("overallProgress", 0)}}
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
        pid = _object_id()
        projects[pid] = self._new(pid, body)
        self._save(projects)
        return JSONResponse(projects[pid], status_code=201)

    async def _get(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        project = self._load().get(request.path_params["pid"])
        # Payload's findByID throws NotFound before the route's own 404: the catch answers 500.
        return JSONResponse(self._shown(project)) if project else _err(500, "Internal server error")

    async def _put(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        projects = self._load()
        project = projects.get(request.path_params["pid"])
        body = await request.json()
        if project is None or ("status" in body and body["status"] not in _STATUSES):
            return _err(500, "Internal server error")  # NotFound / Payload's ValidationError, caught
        for key in ("title", "description", "status"):  # progress is ignored here
            if key in body:
                project[key] = body[key]
        if isinstance(body.get("projectSettings"), dict):
            project["projectSettings"] = {**project.get("projectSettings", {}), **body["projectSettings"]}
        project["updatedAt"] = _iso()
        self._save(projects)
        return JSONResponse(self._shown(project))

    async def _delete(self, request: Request) -> Response:
        if denied := self._bearer_ok(request):
            return denied
        projects = self._load()
        if projects.pop(request.path_params["pid"], None) is None:
            return _err(500, "Internal server error")
        self._save(projects)
        return Response(status_code=204)

    async def _login(self, request: Request) -> Response:
        body = await request.json()
        if self.locked_until > time.time():
            msg = "This user is locked due to having too many failed login attempts."
            return JSONResponse({"errors": [{"message": msg}]}, 401)
        if body.get("email") != self.email or body.get("password") != self.password:
            self.failed_logins += 1
            if self.failed_logins >= _LOCK_AFTER:
                self.failed_logins, self.locked_until = 0, time.time() + _LOCK_SECONDS
            return JSONResponse(
                {"errors": [{"message": "The email or password provided is incorrect."}]}, 401
            )
        self.failed_logins = 0
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_ttl
        return JSONResponse({"message": "Authentication Passed", "token": token, "exp": int(self.tokens[token]),
                             "user": {"id": "u-orchestrator", "email": self.email}})  # fmt: skip

    @staticmethod
    def _invalid_progress(progress: Any) -> str:
        if not isinstance(progress, dict):
            return "progress"
        if "currentPhase" in progress and progress["currentPhase"] not in _PHASES:
            return "progress.currentPhase"
        overall = progress.get("overallProgress", 0)
        if isinstance(overall, bool) or not isinstance(overall, int | float) or not 0 <= overall <= 100:
            return "progress.overallProgress"
        return ""

    async def _patch(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if auth.startswith(("JWT ", "Bearer ")) else ""
        if self.tokens.get(token, 0) < time.time():
            return JSONResponse(_FORBIDDEN, 403)  # no user: access denied (Payload says 403, not 401)
        projects = self._load()
        project = projects.get(request.path_params["pid"])
        if project is None:
            return JSONResponse({"errors": [{"message": "Not Found"}]}, 404)
        body = await request.json()
        bad = self._invalid_progress(body["progress"]) if "progress" in body else ""
        if bad:
            return JSONResponse({"errors": [{"name": "ValidationError", "message": f"The following field is invalid: {bad}",
                                             "data": {"collection": "projects", "errors": [{"path": bad}]}}]}, 400)  # fmt: skip
        for key in ("title", "description", "status"):
            if key in body:
                project[key] = body[key]
        if "progress" in body:
            project["progress"] = {**project.get("progress", {}), **body["progress"]}
        project["updatedAt"] = _iso()
        self._save(projects)
        self.patches += 1
        return JSONResponse({"doc": project, "message": "Updated successfully."})

    def app(self) -> Starlette:
        """The ASGI app (seeds the demo's project on first start)."""
        self.seed(DEMO_PROJECT_ID, "The Lighthouse Map", genre="sci-fi", episodes=1)
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
