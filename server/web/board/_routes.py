"""The production board: a live web page on the HTTP port, for people.

``/`` serves the page (no data in it); everything with data is under ``/board/api`` and needs the same
API key as MCP (``Authorization: Bearer``, checked by `ApiKeyMiddleware`), with the same project scope
and roles: a ``read`` key sees, ``decide`` answers, ``operate`` pauses/resumes/cancels/retries/forks.
The page keeps the key in ``sessionStorage`` and sends it on every ``fetch``, the live stream included:
``/board/api/stream`` is Server-Sent Events read with ``fetch`` (a streamed body), not ``EventSource``,
which cannot send headers, so no key or token ever goes into a URL.

Fragments are rendered here with Jinja2 (autoescaped) and swapped into the page by ``board.js``;
everything goes through `OrchestratorService`, the same calls (and the same audit events) as the tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapters import TERMINAL, InvalidArgumentError, OrchestratorError, RequestError, Status
from server.core import (
    Caller,
    Deliverables,
    OrchestratorService,
    Refusal,
    WorkflowStatus,
    current_caller,
    outside_failures,
    refusal,
)
from server.mcp import RedisNotifier
from server.web.board._graph import node_states, picture, timeline
from server.web.board._shown import deliverables_view

__all__ = ["BOARD_API", "Board"]

log = structlog.get_logger(__name__)

BOARD_API = "/board/api"
_STATE_URI = re.compile(r"^workflow://(wf-[0-9a-f]{16})/state$")
_STATUSES = (*(s for s in Status if s not in TERMINAL), *sorted(TERMINAL))
_OPS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "retry": "retry_step"}
# A burst of changes (a step's status, its events, its checkpoint) becomes one message per workflow.
_COALESCE_SECONDS = 0.1
_KEEPALIVE_SECONDS = 15.0
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
        loader=PackageLoader("server.web.board", "templates"),
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


def _refused(exc: OrchestratorError) -> Refusal:
    said = refusal(exc)
    if said is None:
        raise exc
    return said


def _error(exc: OrchestratorError) -> JSONResponse:
    said = _refused(exc)
    headers = {"Retry-After": str(math.ceil(said.retry_after))} if said.retry_after is not None else None
    return JSONResponse(
        {"error": said.code, "message": said.message}, status_code=said.http_status, headers=headers
    )


async def _json(coro: Awaitable[BaseModel]) -> Response:
    try:
        result = await coro
    except OrchestratorError as exc:
        return _error(exc)
    return JSONResponse(result.model_dump(mode="json"))


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidArgumentError("body", "must be a JSON object")
    return body


class Board:
    """The board's routes over the service.

    Args:
        service: the operations (scope, roles and audit are the tools').
        notifier: the change notices every instance receives (the live stream).
        deliverables: where the workflows' files are.
    """

    def __init__(
        self, service: OrchestratorService, notifier: RedisNotifier, deliverables: Deliverables
    ) -> None:
        self._service = service
        self._notifier = notifier
        self._deliverables = deliverables
        self._env = _environment()

    def routes(self) -> list[BaseRoute]:
        """The page, its static files, and the key-protected ``/board/api``."""
        return [
            Route("/", self.page),
            Mount(
                "/board/static",
                app=StaticFiles(packages=[("server.web.board", "static")]),
                name="board-static",
            ),
            Route(f"{BOARD_API}/whoami", self.whoami),
            Route(f"{BOARD_API}/productions", self.productions),
            Route(f"{BOARD_API}/quotas", self.quotas),
            Route(f"{BOARD_API}/stream", self.stream),
            Route(f"{BOARD_API}/w/{{wid}}", self.production),
            Route(f"{BOARD_API}/w/{{wid}}/file/{{name}}", self.media),
            Route(f"{BOARD_API}/w/{{wid}}/decide", self.decide, methods=["POST"]),
            Route(f"{BOARD_API}/w/{{wid}}/op/{{op}}", self.operate, methods=["POST"]),
            Route(f"{BOARD_API}/w/{{wid}}/fork", self.fork, methods=["POST"]),
        ]

    def _render(self, name: str, **context: Any) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    # -- pages and fragments --------------------------------------------------------------------

    async def page(self, _: Request) -> Response:
        """The page (no data in it)."""
        response = self._render("board.html", api=BOARD_API)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def whoami(self, _: Request) -> Response:
        """Who the key is and what it may do (the page shows or hides its buttons by it)."""
        c = _caller()
        return JSONResponse({"name": c.name, "role": c.role, "projects": list(c.projects),
                             "can_decide": c.can("decide"), "can_operate": c.can("operate")})  # fmt: skip

    async def productions(self, request: Request) -> Response:
        """The list fragment: the caller's productions, newest first, optionally of a project and status."""
        caller = _caller()
        project = request.query_params.get("project") or None
        status = request.query_params.get("status") or None
        service = self._service
        try:
            page_ = await service.list_workflows(caller, project_id=project, status=status, limit=100)
            rows = await asyncio.gather(*(service.get_status(caller, w.workflow_id) for w in page_.workflows))
            quotas = await service.quota_usage(caller, [project] if project else [r.project_id for r in rows])
        except OrchestratorError as exc:
            return self._render("_error.html", error=_refused(exc))
        return self._render(
            "_list.html", rows=rows, caller=caller, project=project or "", status=status or "", quotas=quotas
        )

    async def quotas(self, request: Request) -> Response:
        """What the caller's key and the projects asked for (``?project=a&project=b``) use of their quotas."""
        try:
            usage = await self._service.quota_usage(_caller(), request.query_params.getlist("project"))
        except OrchestratorError as exc:
            return _error(exc)
        return JSONResponse({"quotas": usage})

    async def production(self, request: Request) -> Response:
        """The detail fragment of one production: graph, timeline, decisions, deliverables, events."""
        caller = _caller()
        wid = request.path_params["wid"]
        service = self._service
        try:
            status = await service.get_status(caller, wid)
            events = await service.events(caller, wid)
            checkpoints = await service.checkpoints(caller, wid, limit=50)
            decisions = await service.decisions(caller, wid)
        except OrchestratorError as exc:
            return self._render("_error.html", error=_refused(exc))
        try:
            latest = await service.latest_values(caller, wid)
        except OrchestratorError:
            latest = None  # the status above already says the run stopped on it
        values = latest[1] if latest is not None else {}
        shown = await asyncio.to_thread(
            deliverables_view, self._deliverables, status.project_id, wid, values, BOARD_API
        )
        return self._render(
            "_detail.html", s=status, caller=caller, events=list(reversed(events[-150:])), failures=outside_failures(events),
            checkpoints=checkpoints.checkpoints, answered=decisions["answered"], deliverables=shown,
            terminal=status.status in TERMINAL, now=time.time(), **_drawing(status, events),
        )  # fmt: skip

    async def media(self, request: Request) -> Response:
        """One file of a production's deliverables folder (with the key, never by a bare URL)."""
        wid, name = request.path_params["wid"], request.path_params["name"]
        try:
            status = await self._service.get_status(_caller(), wid)
        except OrchestratorError as exc:
            return _error(exc)
        path = self._deliverables.file(status.project_id, wid, name)
        if path is None:
            return JSONResponse(
                {"error": "not_found", "message": f"no deliverable {name!r}"}, status_code=404
            )
        return FileResponse(path, headers={"Cache-Control": "private, no-store"})

    # -- operations ---------------------------------------------------------------------------

    async def decide(self, request: Request) -> Response:
        """Answer a decision (``decide`` keys)."""
        try:
            body = await _body(request)
        except RequestError as exc:
            return _error(exc)
        return await _json(self._service.submit_decision(
            _caller(), workflow_id=request.path_params["wid"], decision_id=str(body.get("decision_id", "")),
            choice=str(body.get("choice", "")), comment=str(body.get("comment", "")),
        ))  # fmt: skip

    async def operate(self, request: Request) -> Response:
        """Pause, resume, cancel or retry (``operate`` keys)."""
        caller = _caller()
        op = request.path_params["op"]
        if op not in _OPS:
            return _error(InvalidArgumentError("operation", f"{op!r} is not one of {sorted(_OPS)}"))
        log.info("board.operation", op=op, caller=caller.name, workflow_id=request.path_params["wid"])
        method = getattr(self._service, _OPS[op])
        return await _json(method(caller, request.path_params["wid"]))

    async def fork(self, request: Request) -> Response:
        """A new production from a checkpoint (``operate`` keys)."""
        try:
            body = await _body(request)
        except RequestError as exc:
            return _error(exc)
        return await _json(
            self._service.fork(_caller(), request.path_params["wid"], str(body.get("checkpoint_id", "")))
        )

    # -- the live stream ----------------------------------------------------------------------

    async def stream(self, _: Request) -> Response:
        """Server-Sent Events: a message per production of the caller's that changed (coalesced)."""
        caller = _caller()
        changed: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)

        def listener(event: ServerEvent) -> None:
            if isinstance(event, ResourceUpdated) and (m := _STATE_URI.match(str(event.uri))):
                with contextlib.suppress(asyncio.QueueFull):
                    changed.put_nowait(m.group(1))

        unsubscribe = self._notifier.bus.subscribe(listener)
        return StreamingResponse(
            self._events(caller, changed, unsubscribe),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(
        self, caller: Caller, changed: asyncio.Queue[str], unsubscribe: Any
    ) -> AsyncIterator[str]:
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
                        st = await self._service.seen_by(caller, wid)
                    except OrchestratorError:
                        continue  # unusable: the page shows why when it asks for this production
                    if st is None:
                        continue
                    data = {"workflow_id": wid, "project_id": st.project_id, "status": st.status,
                            "percent": st.percent, "phase": st.phase}  # fmt: skip
                    yield f"event: workflow\ndata: {json.dumps(data)}\n\n"
        finally:
            unsubscribe()


def _drawing(status: WorkflowStatus, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The graph drawing with its nodes coloured by the step events, and the step timeline."""
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
    steps = timeline(events)
    t0 = steps[0]["start"] if steps else status.created_at
    t1 = max([time.time() if status.status == Status.RUNNING else 0.0]
             + [s["end"] or s["start"] for s in steps] + [t0 + 0.001])  # fmt: skip
    return {"graph": Markup(svg), "nodes": drawing.nodes if drawing else (), "states": states,  # noqa: S704 - built from escaped parts
            "steps": steps, "t0": t0, "span": t1 - t0}  # fmt: skip
