"""The production board: a live web page on the HTTP port, for people.

``/`` serves the page (no data in it); everything with data is under ``/board/api`` and needs the same
API key as MCP (``Authorization: Bearer``, checked by `ApiKeyMiddleware`), with the same project scope
and roles: a ``read`` key sees, ``decide`` answers, ``operate`` pauses/resumes/cancels/retries/forks.
The page keeps the key in ``sessionStorage`` and sends it on every ``fetch``, the live stream included:
``/board/api/stream`` is Server-Sent Events read with ``fetch`` (a streamed body), not ``EventSource``,
which cannot send headers, so no key or token ever goes into a URL.

Fragments are rendered here with Jinja2 (autoescaped) and swapped into the page by ``board.js``;
operations go through `OrchestratorService`, the same calls (and the same audit events) as the tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapters import TERMINAL, IntegrityError
from server._board_graph import node_states, picture, timeline
from server._caller import current_caller
from server._service import Caller
from server.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
)

if TYPE_CHECKING:
    from server._runtime import Orchestrator

__all__ = ["BOARD_API", "board_routes"]

log = structlog.get_logger(__name__)

BOARD_API = "/board/api"
_STATE_URI = re.compile(r"^workflow://(wf-[0-9a-f]{16})/state$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
_AUDIO = (".wav", ".mp3", ".ogg", ".flac", ".m4a")
_STATUSES = ("queued", "running", "waiting_decision", "paused", *sorted(TERMINAL))
_OPS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "retry": "retry_step"}
_HTTP_STATUS = {NotFoundError: 404, PermissionDeniedError: 403, InvalidArgumentError: 400, ConflictError: 409}
# A burst of changes (a step's status, its events, its checkpoint) becomes one message per workflow.
_COALESCE_SECONDS = 0.1
_KEEPALIVE_SECONDS = 15.0
_TEXT_PREVIEW_BYTES = 20_000
# The page loads its script and styles from here only; media may come from the Task Service's hosts.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data: http: https:; media-src 'self' blob: http: https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _age(seconds: float) -> str:
    s = max(0, int(time.time() - seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("server", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["clock"] = _clock
    env.filters["tojson_compact"] = lambda v: json.dumps(v, default=str, separators=(",", ":"))
    env.globals["statuses"] = _STATUSES
    return env


def _caller() -> Caller:
    # ApiKeyMiddleware put the key's caller here; without keys (--no-auth, loopback) it is the local user.
    return current_caller.get() or Caller()


class _Unusable(ServiceError):
    """A record that failed its signature check: shown as an error, never used."""

    code = "integrity_error"


def _error(exc: ServiceError) -> JSONResponse:
    status = next((code for cls, code in _HTTP_STATUS.items() if isinstance(exc, cls)), 400)
    return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=status)


async def _json(coro: Awaitable[BaseModel]) -> Response:
    try:
        result = await coro
    except ServiceError as exc:
        return _error(exc)
    return JSONResponse(result.model_dump(mode="json"))


class _Deliverable:
    """One deliverable: what it is, where it is, and how the page shows it."""

    def __init__(self, label: str, ref: str, *, wid: str, folder: Path) -> None:
        self.label = label
        self.ref = ref
        name = Path(urlparse(ref).path).name
        self.name = name
        ext = Path(name).suffix.lower()
        self.kind = "image" if ext in _IMAGE else "audio" if ext in _AUDIO else "file"
        local = not urlparse(ref).scheme and Path(ref).parent == folder
        # Files of the workflow's own folder come through the board (with the key); outside URLs
        # (the Task Service's media) are linked as they are; other local paths are only named.
        self.src = f"{BOARD_API}/w/{wid}/file/{name}" if local else ref if urlparse(ref).scheme else ""
        self.protected = local


def _walk(label: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        if value.startswith(("http://", "https://", "/")) and Path(urlparse(value).path).suffix:
            out.append((label, value))
    elif isinstance(value, dict):
        name = value.get("name") or value.get("title")
        for k, v in value.items():
            _walk(f"{label} · {name}" if name and k != "name" else f"{label} · {k}", v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            _walk(f"{label} {i}", v, out)


def board_routes(orch: Orchestrator) -> list[BaseRoute]:  # noqa: PLR0915 - the routes read best together
    """The board's routes: the page, its static files, and the key-protected ``/board/api``."""
    env = _environment()
    service = orch.service
    deliverables_root = orch.media_dir / "deliverables"

    def render(name: str, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def page(_: Request) -> Response:
        response = render("board.html", api=BOARD_API)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def whoami(_: Request) -> Response:
        c = _caller()
        return JSONResponse({"name": c.name, "role": c.role, "projects": list(c.projects),
                             "can_decide": c.can("decide"), "can_operate": c.can("operate")})  # fmt: skip

    async def productions(request: Request) -> Response:
        caller = _caller()
        project = request.query_params.get("project") or None
        status = request.query_params.get("status") or None
        try:
            page_ = await service.list_workflows(caller, project_id=project, status=status, limit=100)
            rows = await asyncio.gather(*(service.get_status(caller, w.workflow_id) for w in page_.workflows))
        except ServiceError as exc:
            return render("_error.html", error=exc)
        except IntegrityError as exc:
            return render(
                "_error.html", error=_Unusable(f"{exc}; the record is kept for inspection and not used")
            )
        return render("_list.html", rows=rows, caller=caller, project=project or "", status=status or "")

    async def _state_values(wid: str) -> dict[str, Any]:
        tup = await orch.saver.aget_tuple({"configurable": {"thread_id": wid, "checkpoint_ns": ""}})
        return dict(tup.checkpoint["channel_values"]) if tup is not None else {}

    def _deliverables(project: str, wid: str, values: dict[str, Any]) -> dict[str, Any]:
        folder = deliverables_root / project / wid
        found: list[tuple[str, str]] = []
        _walk("", values.get("deliverables") or {}, found)
        _walk("", values.get("summary") or {}, found)  # e.g. the preview's keyframe
        unique = {ref: label for label, ref in reversed(found)}
        items = [
            _Deliverable(label.strip(" ·"), ref, wid=wid, folder=folder) for ref, label in unique.items()
        ]
        named = {d.name for d in items}
        texts: dict[str, str] = {}
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.name not in named and _FILE_RE.match(f.name):
                    items.append(_Deliverable(f.stem.replace("_", " "), str(f), wid=wid, folder=folder))
                if f.suffix in {".srt", ".json"} and f.name in {"subtitles.srt", "manifest.json"}:
                    texts[f.name] = f.read_text(errors="replace")[:_TEXT_PREVIEW_BYTES]
        return {
            "images": [d for d in items if d.kind == "image"],
            "audio": [d for d in items if d.kind == "audio"],
            "files": [d for d in items if d.kind == "file"],
            "subtitles": texts.get("subtitles.srt", ""),
            "manifest": texts.get("manifest.json", ""),
        }

    async def production(request: Request) -> Response:
        caller = _caller()
        wid = request.path_params["wid"]
        try:
            status = await service.get_status(caller, wid)
            events = await service.events(caller, wid)
            checkpoints = await service.checkpoints(caller, wid, limit=50)
            decisions = await service.decisions(caller, wid)
        except ServiceError as exc:
            return render("_error.html", error=exc)
        except IntegrityError as exc:
            return render(
                "_error.html", error=_Unusable(f"{exc}; the record is kept for inspection and not used")
            )
        states = node_states(events, status.status, status.step)
        try:
            drawing = picture(status.workflow)
            svg = drawing.svg
            for node, state in states.items():
                svg = svg.replace(
                    f'<g class="node" data-node="{node}">', f'<g class="node {state}" data-node="{node}">'
                )
        except KeyError:
            drawing, svg = None, ""
        try:
            values = await _state_values(wid)
        except IntegrityError:
            values = {}  # the status above already says the run stopped on it
        steps = timeline(events)
        t0 = steps[0]["start"] if steps else status.created_at
        t1 = max([time.time() if status.status == "running" else 0.0]
                 + [s["end"] or s["start"] for s in steps] + [t0 + 0.001])  # fmt: skip
        return render(
            "_detail.html", s=status, caller=caller, graph=Markup(svg),  # noqa: S704 - built from escaped parts
            nodes=drawing.nodes if drawing else (), states=states, steps=steps, t0=t0, span=t1 - t0,
            events=list(reversed(events[-150:])), checkpoints=checkpoints.checkpoints, answered=decisions["answered"],
            deliverables=await asyncio.to_thread(_deliverables, status.project_id, wid, values), terminal=status.status in TERMINAL,
            now=time.time(),
        )  # fmt: skip

    async def media(request: Request) -> Response:
        caller = _caller()
        wid, name = request.path_params["wid"], request.path_params["name"]
        try:
            status = await service.get_status(caller, wid)
        except ServiceError as exc:
            return _error(exc)
        path = deliverables_root / status.project_id / wid / name
        if not _FILE_RE.match(name) or not path.is_file():
            return JSONResponse(
                {"error": "not_found", "message": f"no deliverable {name!r}"}, status_code=404
            )
        return FileResponse(path, headers={"Cache-Control": "private, no-store"})

    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise InvalidArgumentError("body", "must be a JSON object")
        return body

    async def decide(request: Request) -> Response:
        caller = _caller()
        try:
            body = await _body(request)
        except ServiceError as exc:
            return _error(exc)
        return await _json(service.submit_decision(
            caller, workflow_id=request.path_params["wid"], decision_id=str(body.get("decision_id", "")),
            choice=str(body.get("choice", "")), comment=str(body.get("comment", "")),
        ))  # fmt: skip

    async def operate(request: Request) -> Response:
        caller = _caller()
        op = request.path_params["op"]
        if op not in _OPS:
            return _error(InvalidArgumentError("operation", f"{op!r} is not one of {sorted(_OPS)}"))
        log.info("board.operation", op=op, caller=caller.name, workflow_id=request.path_params["wid"])
        method = getattr(service, _OPS[op])
        return await _json(method(caller, request.path_params["wid"]))

    async def fork(request: Request) -> Response:
        caller = _caller()
        try:
            body = await _body(request)
        except ServiceError as exc:
            return _error(exc)
        return await _json(
            service.fork(caller, request.path_params["wid"], str(body.get("checkpoint_id", "")))
        )

    async def stream(request: Request) -> Response:
        caller = _caller()
        if orch.notifier is None:
            return JSONResponse(
                {"error": "unavailable", "message": "no change notices here"}, status_code=503
            )
        changed: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)

        def listener(event: ServerEvent) -> None:
            if isinstance(event, ResourceUpdated) and (m := _STATE_URI.match(str(event.uri))):
                with contextlib.suppress(asyncio.QueueFull):
                    changed.put_nowait(m.group(1))

        unsubscribe = orch.notifier.bus.subscribe(listener)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n: connected\n\n"
                while True:
                    try:
                        first = await asyncio.wait_for(changed.get(), _KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    await asyncio.sleep(_COALESCE_SECONDS)
                    wids = {first}
                    while not changed.empty():
                        wids.add(changed.get_nowait())
                    for wid in sorted(wids):
                        try:
                            rec = await orch.store.get(wid)
                        except IntegrityError:
                            continue  # the page shows why when it asks for this production
                        if rec is None or not caller.sees(rec.project_id):
                            continue
                        data = {"workflow_id": wid, "project_id": rec.project_id, "status": rec.status,
                                "percent": rec.percent, "phase": rec.phase}  # fmt: skip
                        yield f"event: workflow\ndata: {json.dumps(data)}\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/", page),
        Mount("/board/static", app=StaticFiles(packages=[("server", "static")]), name="board-static"),
        Route(f"{BOARD_API}/whoami", whoami),
        Route(f"{BOARD_API}/productions", productions),
        Route(f"{BOARD_API}/stream", stream),
        Route(f"{BOARD_API}/w/{{wid}}", production),
        Route(f"{BOARD_API}/w/{{wid}}/file/{{name}}", media),
        Route(f"{BOARD_API}/w/{{wid}}/decide", decide, methods=["POST"]),
        Route(f"{BOARD_API}/w/{{wid}}/op/{{op}}", operate, methods=["POST"]),
        Route(f"{BOARD_API}/w/{{wid}}/fork", fork, methods=["POST"]),
    ]
