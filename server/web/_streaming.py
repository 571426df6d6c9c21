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
from mcp.server.transport_security import RequestBodyLimitMiddleware
from mcp_types import LOG_LEVEL_META_KEY
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from server.mcp import PLAIN_REPLY, lowlevel

__all__ = ["streamable_http_app", "wants_stream"]


def wants_stream(body: bytes, accept: str) -> bool:
    """True when a POSTed JSON-RPC request asked for notifications and the client can read a stream."""
    if "text/event-stream" not in accept:
        return False
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return False
    return meta.get("progressToken") is not None or meta.get(LOG_LEVEL_META_KEY) is not None


class _Chooser:
    """The /mcp endpoint: reads the (size-limited) body once, then hands the request to one manager."""

    def __init__(self, plain: StreamableHTTPSessionManager, streaming: StreamableHTTPSessionManager) -> None:
        self.plain = plain
        self.streaming = streaming

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

        accept = Headers(scope=scope).get("accept", "")
        if wants_stream(body, accept):
            await self.streaming.asgi_app(scope, replay, send)
            return
        token = PLAIN_REPLY.set(True)
        try:
            await self.plain.asgi_app(scope, replay, send)
        finally:
            PLAIN_REPLY.reset(token)


def streamable_http_app(mcp: MCPServer, *, host: str) -> Starlette:
    """The SDK's stateless Streamable HTTP app with the per-request JSON/SSE choice at /mcp.

    Args:
        mcp: the server.
        host: the address served (loopback turns on the SDK's DNS-rebinding protection).
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
    chooser = RequestBodyLimitMiddleware(_Chooser(plain, streaming), plain.max_request_body_size)
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
