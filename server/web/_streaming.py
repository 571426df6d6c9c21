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

from server.mcp import PLAIN_REPLY, ElicitationAnswers, lowlevel

__all__ = ["streamable_http_app", "wants_stream"]


# Requests whose answer is a stream by nature: a listen stream (2026-07-28), and a 2025-11-25
# tasks/result, which waits for the task's end and asks its decisions on the way.
_STREAMED_METHODS = frozenset({"subscriptions/listen", "tasks/result"})


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
    """The /mcp endpoint: reads the (size-limited) body once, then hands the request to one manager."""

    def __init__(
        self,
        plain: StreamableHTTPSessionManager,
        streaming: StreamableHTTPSessionManager,
        answers: ElicitationAnswers | None,
    ) -> None:
        self.plain = plain
        self.streaming = streaming
        self.answers = answers
        self.security = TransportSecurityMiddleware(plain.security_settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
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
        if self.answers is not None and self.answers.ours(message):
            await self._answer(scope, message, send)
            return
        accept = Headers(scope=scope).get("accept", "")
        if wants_stream(message, accept):
            await self.streaming.asgi_app(scope, replay, send)
            return
        token = PLAIN_REPLY.set(True)
        try:
            await self.plain.asgi_app(scope, replay, send)
        finally:
            PLAIN_REPLY.reset(token)

    async def _answer(self, scope: Scope, message: dict[str, Any], send: Send) -> None:
        """A client's answer to a question asked without a back channel: recorded here, whichever
        instance asked (the SDK would drop it: no request of this process awaits it)."""
        refused = await self.security.validate_request(Request(scope), is_post=True)
        if refused is not None:
            await refused(scope, _no_body, send)
            return
        if self.answers is not None:
            await self.answers.take(message)
        await Response(status_code=202)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def streamable_http_app(mcp: MCPServer, *, host: str, answers: ElicitationAnswers | None = None) -> Starlette:
    """The SDK's stateless Streamable HTTP app with the per-request JSON/SSE choice at /mcp.

    Args:
        mcp: the server.
        host: the address served (loopback turns on the SDK's DNS-rebinding protection).
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
    chooser = RequestBodyLimitMiddleware(_Chooser(plain, streaming, answers), plain.max_request_body_size)
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
