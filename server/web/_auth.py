"""API keys on the HTTP port: who a request's ``Authorization: Bearer`` key stands for."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters import KeyStore
from server.core import Caller, current_caller

__all__ = ["ApiKeyMiddleware", "authenticate"]

log = structlog.get_logger(__name__)


async def authenticate(keys: KeyStore, authorization: str, source: str) -> tuple[Caller | None, str]:
    """The caller of an ``Authorization`` header's bearer key, or (None, why not).

    Failures are counted per source address (a burst is refused for a while) and audited by the key store.
    """
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    key, reason = await keys.verify(token, source=source)
    return (Caller.of_key(key), "") if key is not None else (None, reason)


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` on the MCP endpoint and sets the request's caller.

    Webhooks (their own per-job tokens), health and metrics stay open. WebSocket upgrades are
    checked by the /ws endpoint itself.
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, *, protected: tuple[str, ...] = ("/mcp",)) -> None:
        self.app = app
        self.keys = keys
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        source = request.client.host if request.client else ""
        caller, reason = await authenticate(self.keys, request.headers.get("authorization", ""), source)
        if caller is None:
            throttled = reason.startswith("too many")
            response = JSONResponse(
                {"error": "too_many_attempts" if throttled else "unauthorized",
                 "message": reason if throttled else f"{reason}: send Authorization: Bearer <api key>"},
                status_code=429 if throttled else 401,
                headers={"Retry-After": "60"} if throttled else {"WWW-Authenticate": 'Bearer realm="movie-orchestrator"'},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        token_var = current_caller.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            current_caller.reset(token_var)
