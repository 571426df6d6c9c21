"""The HTTP port's ASGI app: MCP (Streamable HTTP at /mcp, WebSocket at /ws), Task Service webhooks,
health and metrics, and the production board."""

from __future__ import annotations

from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from adapters import KeyStore, tracing
from server.core import Caller, current_caller
from server.engine import WEBHOOK_PATH
from server.mcp import ElicitationAnswers, RedisNotifier
from server.web._auth import ApiKeyMiddleware, authenticate
from server.web._health import Health
from server.web._streaming import streamable_http_app
from server.web._webhooks import WebhookReceiver
from server.web._ws import serve_mcp_websocket
from server.web.board import BOARD_API

__all__ = ["build_http_app"]


def build_http_app(
    mcp: MCPServer,
    *,
    keys: KeyStore | None,
    webhooks: WebhookReceiver,
    health: Health,
    board: list[BaseRoute],
    trusted_proxies: list[str],
    notifier: RedisNotifier,
    answers: ElicitationAnswers,
) -> ASGIApp:
    """The ASGI app of the HTTP port (stateless Streamable HTTP: any instance answers any request).

    Args:
        mcp: the server.
        keys: API keys to require on /mcp, /ws and the board's API; None serves them without auth
            (loopback only).
        webhooks: the Task Service's webhook endpoint.
        health: /healthz, /readyz, /metrics.
        board: the production board's routes.
        trusted_proxies: reverse proxies whose X-Forwarded-For names the caller (none: the socket's peer).
        notifier: this instance's change notices (HTTP sessions' subscriptions are delivered from them).
        answers: records answers POSTed to decisions asked on stateless HTTP (2025-11-25 tasks).
    """
    app = streamable_http_app(mcp, host="127.0.0.1", notifier=notifier, answers=answers)

    async def ws(websocket: WebSocket) -> None:
        caller: Caller | None = None
        if keys is not None:
            source = websocket.client.host if websocket.client else ""
            caller, _ = await authenticate(keys, websocket.headers.get("authorization", ""), source)
            if caller is None:
                await websocket.close(code=1008, reason="unauthorized")
                return
        reset = current_caller.set(caller) if caller is not None else None
        try:
            await serve_mcp_websocket(websocket, mcp)
        finally:
            if reset is not None:
                current_caller.reset(reset)

    app.router.routes.extend(
        [
            Route(WEBHOOK_PATH, webhooks.receive, methods=["POST"]),
            *health.routes(),
            WebSocketRoute("/ws", ws),
            *board,
        ]
    )
    served: ASGIApp = app if keys is None else ApiKeyMiddleware(app, keys, protected=("/mcp", BOARD_API))
    served = _continuing_traces(served)
    # A caller's address (throttle, audit, logs) is its socket's peer, unless that peer is a configured
    # proxy: only then is X-Forwarded-For read (its rightmost untrusted entry).
    if not trusted_proxies:
        return served
    trusted: Any = ProxyHeadersMiddleware(
        cast("Any", served), trusted_hosts=trusted_proxies
    )  # uvicorn's ASGI types
    return cast("ASGIApp", trusted)


def _continuing_traces(app: ASGIApp) -> ASGIApp:
    """A request that carries a W3C ``traceparent`` header continues that trace (the SDK's request span takes
    it as parent when the request's ``_meta`` names none)."""

    async def continuing(scope: Scope, receive: Receive, send: Send) -> None:
        if not tracing.enabled() or scope["type"] not in {"http", "websocket"}:
            await app(scope, receive, send)
            return
        wanted = {b"traceparent", b"tracestate"}
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", []) if k in wanted
        }
        with tracing.continued(headers):
            await app(scope, receive, send)

    return continuing
