"""Sessions of handshake-era Streamable HTTP clients: the ``Mcp-Session-Id`` issued on ``initialize``, the
standalone GET stream that sends the session's resource updates, and ``DELETE``.

Requests stay stateless (any instance answers any of them); a session is only who opened it and what it
subscribed to, in Redis (`adapters.HttpSessions`). The GET stream of a session may be open on any
instance: it hears every workflow change through the `RedisNotifier` that instance already runs, and
re-reads the session's subscriptions when any instance announces a change of them. Without a session
id, GET is refused with 405 (there is nothing it could carry), which clients read as "no stream".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from server.core import current_caller
from server.mcp import RedisNotifier

__all__ = ["SESSION_HEADER", "HttpSessionPort", "refusal"]

log = structlog.get_logger(__name__)

SESSION_HEADER = "mcp-session-id"
_HEARTBEAT_SECONDS = 15.0


def _caller_name() -> str:
    caller = current_caller.get()
    return caller.name if caller is not None else ""


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON-RPC error body (no request id) with an HTTP status."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


class HttpSessionPort:
    """Issues, serves and ends handshake-era HTTP sessions.

    Args:
        notifier: this instance's change notices (and the sessions' store).
        security: the SDK's DNS-rebinding checks, applied to the requests served here.
        heartbeat: seconds of silence after which the GET stream sends a comment (and keeps the session).
    """

    def __init__(
        self,
        notifier: RedisNotifier,
        security: TransportSecurityMiddleware,
        heartbeat: float = _HEARTBEAT_SECONDS,
    ) -> None:
        self._notifier = notifier
        self._sessions = notifier.http_sessions
        self._security = security
        self._heartbeat = heartbeat

    async def issue(self) -> str:
        """A new session of the current caller."""
        return await self._sessions.open(_caller_name())

    async def known(self, sid: str) -> bool:
        """True when the session exists and the current caller opened it."""
        return await self._sessions.owner(sid) == _caller_name()

    async def end(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        """``DELETE`` with a session id: the session ends (its GET streams too)."""
        refused = await self._security.validate_request(Request(scope, receive))
        if refused is None and not await self.known(sid):
            refused = refusal(404, "Session not found: initialize again")
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self._sessions.close(sid)
        await Response(status_code=200)(scope, receive, send)

    async def stream(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        """``GET`` with a session id: the session's ``notifications/resources/updated``, until it ends or
        the client leaves."""
        request = Request(scope, receive)
        refused = await self._security.validate_request(request)
        if refused is None and "text/event-stream" not in request.headers.get("accept", ""):
            refused = refusal(406, "Not Acceptable: the GET stream is text/event-stream")
        if refused is None and not await self.known(sid):
            refused = refusal(404, "Session not found: initialize again")
        if refused is not None:
            await refused(scope, receive, send)
            return
        events: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)
        uris = await self._sessions.uris(sid)

        def on_event(event: ServerEvent) -> None:
            if isinstance(event, ResourceUpdated) and str(event.uri) in uris:
                with contextlib.suppress(asyncio.QueueFull):
                    events.put_nowait(("updated", str(event.uri)))

        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
            (SESSION_HEADER.encode(), sid.encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
        unsubscribe = self._notifier.bus.subscribe(on_event)
        try:
            with self._notifier.session_changes(sid) as changes:
                helpers = [
                    asyncio.create_task(_forward(changes.get, events, "changed")),
                    asyncio.create_task(_until_gone(receive, events)),
                ]
                try:
                    await self._serve(sid, send, events, uris)
                finally:
                    for task in helpers:
                        task.cancel()
        finally:
            unsubscribe()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve(
        self, sid: str, send: Send, events: asyncio.Queue[tuple[str, str]], uris: set[str]
    ) -> None:
        while True:
            try:
                kind, uri = await asyncio.wait_for(events.get(), self._heartbeat)
            except TimeoutError:
                if await self._sessions.owner(sid) is None:
                    return
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                continue
            if kind == "gone":
                return
            if kind == "changed":
                if await self._sessions.owner(sid) is None:
                    return  # ended (DELETE) on some instance
                uris.clear()
                uris.update(await self._sessions.uris(sid))
                continue
            note = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
            frame = f"event: message\ndata: {json.dumps(note)}\n\n".encode()
            await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _forward(
    get: Callable[[], Awaitable[str]], into: asyncio.Queue[tuple[str, str]], kind: str
) -> None:
    while True:
        await get()
        with contextlib.suppress(asyncio.QueueFull):
            into.put_nowait((kind, ""))


async def _until_gone(receive: Receive, into: asyncio.Queue[tuple[str, str]]) -> None:
    message: Any = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    await into.put(("gone", ""))
