"""Streamable HTTP that streams when a request asks for it, and stays plain JSON otherwise.

The SDK's HTTP transport is either JSON-response (one JSON body per request: progress and log
notifications of that request are dropped) or SSE (every handshake-era request is answered as an
event stream, which thin JSON clients and benchmarks then cannot read). We keep both managers,
stateless (any instance answers any request), and choose per request: one that carries a progress
token or a per-request log level (``_meta``), from a client that accepts ``text/event-stream``, is
answered by the SSE manager; the rest by the JSON manager. At 2026-07-28 the SSE manager still
answers JSON when the handler emits nothing, so choosing it is never wrong, only a little dearer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import RequestBodyLimitMiddleware, TransportSecurityMiddleware
from mcp_types import LOG_LEVEL_META_KEY
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from server.mcp import HTTP_SESSION, PLAIN_REPLY, ElicitationAnswers, RedisNotifier, lowlevel
from server.web._sessions import SESSION_HEADER, HttpSessionPort, refusal

__all__ = ["streamable_http_app", "wants_stream"]


# Requests whose answer is a stream by nature: a listen stream (2026-07-28), and a 2025-11-25
# tasks/result, which waits for the task's end and asks its decisions on the way.
_STREAMED_METHODS = frozenset({"subscriptions/listen", "tasks/result"})
_SUBSCRIBING = frozenset({"resources/subscribe", "resources/unsubscribe"})


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def wants_stream(body: bytes | Any, accept: str) -> bool:
    """True when a POSTed JSON-RPC request asked for notifications (or is answered by a stream by nature)
    and the client can read a stream."""
    if "text/event-stream" not in accept:
        return False
    message = _parse(body) if isinstance(body, bytes) else body
    if isinstance(message, dict) and message.get("method") in _STREAMED_METHODS:
        return True
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return False
    return meta.get("progressToken") is not None or meta.get(LOG_LEVEL_META_KEY) is not None


class _Chooser:
    """The /mcp endpoint: reads the (size-limited) body once, then hands the request to one manager; serves
    the handshake-era sessions (`HttpSessionPort`) and clients' answers to questions asked without a back
    channel (`ElicitationAnswers`) itself."""

    def __init__(
        self,
        plain: StreamableHTTPSessionManager,
        streaming: StreamableHTTPSessionManager,
        answers: ElicitationAnswers,
        sessions: HttpSessionPort,
    ) -> None:
        self.plain = plain
        self.streaming = streaming
        self.answers = answers
        self.sessions = sessions
        self.security = TransportSecurityMiddleware(plain.security_settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        sid = headers.get(SESSION_HEADER, "")
        method = scope.get("method")
        if scope["type"] == "http" and method == "GET":
            if not sid:
                why = ("no session: a GET stream belongs to the Mcp-Session-Id issued on initialize "
                           "(handshake era); at 2026-07-28 use subscriptions/listen")  # fmt: skip
                await refusal(405, why, {"allow": "POST, DELETE"})(scope, receive, send)
                return
            await self.sessions.stream(scope, receive, send, sid)
            return
        if scope["type"] == "http" and method == "DELETE" and sid:
            await self.sessions.end(scope, receive, send, sid)
            return
        if scope["type"] != "http" or method != "POST":
            await self.plain.asgi_app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before sending its body: nothing to answer.
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        message = _parse(body)
        if self.answers.ours(message):
            await self._answer(scope, message, send)
            return
        kind = message.get("method") if isinstance(message, dict) else None
        if kind == "initialize":
            send = await self._with_session(send)
        session = HTTP_SESSION.set(await self._session(sid) if kind in _SUBSCRIBING else None)
        try:
            if wants_stream(message, headers.get("accept", "")):
                await self.streaming.asgi_app(scope, replay, send)
                return
            plain = PLAIN_REPLY.set(True)
            try:
                await self.plain.asgi_app(scope, replay, send)
            finally:
                PLAIN_REPLY.reset(plain)
        finally:
            HTTP_SESSION.reset(session)

    async def _session(self, sid: str) -> str:
        """The request's session id if this server issued it to this caller, else ""."""
        return sid if sid and await self.sessions.known(sid) else ""

    async def _with_session(self, send: Send) -> Send:
        """`send`, adding a new session's id to a successful ``initialize`` answer."""
        sid = await self.sessions.issue()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (SESSION_HEADER.encode(), sid.encode())],
                }
            await send(message)

        return sending

    async def _answer(self, scope: Scope, message: dict[str, Any], send: Send) -> None:
        """A client's answer to a question asked without a back channel: recorded here, whichever
        instance asked (the SDK would drop it: no request of this process awaits it)."""
        refused = await self.security.validate_request(Request(scope), is_post=True)
        if refused is not None:
            await refused(scope, _no_body, send)
            return
        await self.answers.take(message)
        await Response(status_code=202)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def streamable_http_app(
    mcp: MCPServer, *, host: str, notifier: RedisNotifier, answers: ElicitationAnswers
) -> Starlette:
    """The SDK's stateless Streamable HTTP app with the per-request JSON/SSE choice at /mcp, and the
    handshake era's sessions (subscriptions delivered on the GET stream).

    Args:
        mcp: the server.
        host: the address served (loopback turns on the SDK's DNS-rebinding protection).
        notifier: this instance's change notices (and the sessions' store).
        answers: records clients' answers to decisions asked on stateless HTTP (2025-11-25 tasks).
    """
    app = mcp.streamable_http_app(stateless_http=True, json_response=True, host=host)
    plain = mcp.session_manager
    streaming = StreamableHTTPSessionManager(
        app=lowlevel(mcp),
        json_response=False,
        stateless=True,
        security_settings=plain.security_settings,
        max_request_body_size=plain.max_request_body_size,
    )
    sessions = HttpSessionPort(notifier, TransportSecurityMiddleware(plain.security_settings))
    chooser = RequestBodyLimitMiddleware(
        _Chooser(plain, streaming, answers, sessions), plain.max_request_body_size
    )
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == "/mcp":
            route.app = chooser
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with outer(a) as state, streaming.run():
            yield state

    app.router.lifespan_context = lifespan
    return app
