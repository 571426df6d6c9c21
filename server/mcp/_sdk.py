"""The one place that reaches into the mcp SDK's private parts (read against mcp 2.3.0).

Each accessor says why it exists and which public hook would replace it. `tests/server/test_sdk_private.py`
pins every one of them against the installed SDK: when an upgrade breaks one, that test names it, and the
fix (or the deletion, once the SDK offers the hook) is made here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerMiddleware
from mcp.server.lowlevel.server import HandlerEntry, Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import ServerMessageMetadata

__all__ = [
    "add_middleware",
    "add_request_handler",
    "connection_state",
    "lowlevel",
    "progress_listener",
    "request_handler",
    "send_unanswered_request",
]

# The SDK keeps the listener of a request's progress on its (possibly wrapped) dispatch context.
_LISTENER_ATTRS = ("progress_token", "_progress_token", "_on_progress")


def lowlevel(mcp: MCPServer) -> Server[Any]:
    """The low-level `Server` inside an `MCPServer`.

    Why: serving a session over our own transport (WebSocket: `Server.run`) and a second Streamable HTTP
    manager (the per-request JSON/SSE choice) need it, and `MCPServer` has no public accessor.
    """
    return mcp._lowlevel_server


def add_request_handler(
    mcp: MCPServer, method: str, params_type: type[Any], handler: Callable[[Any, Any], Awaitable[Any]]
) -> None:
    """Serve a request method `MCPServer` does not (or serves differently).

    Why: ``resources/subscribe``/``unsubscribe`` (handshake era), ``logging/setLevel``, ``resources/list``
    with the caller's workflows, ``completion/complete``, and ``subscriptions/listen`` with task
    notifications. `MCPServer` registers its own handlers only; the public hook would be an
    ``MCPServer.add_request_handler``.
    """
    lowlevel(mcp).add_request_handler(method, params_type, handler)


def request_handler(mcp: MCPServer, method: str) -> HandlerEntry[Any] | None:
    """The handler `MCPServer` registered for a method (to wrap it). Why: as `add_request_handler`."""
    return lowlevel(mcp).get_request_handler(method)


def connection_state(session: Any) -> dict[str, Any] | None:
    """Per-connection scratch state of a request's session (None when the session has none).

    Why: the level a handshake-era client set with ``logging/setLevel`` must outlive the request; the SDK
    keeps a ``state`` dict on the connection, which `ServerSession` holds privately (``_connection``).
    """
    connection = getattr(session, "_connection", None)
    state = getattr(connection, "state", None)
    return state if isinstance(state, dict) else None


def progress_listener(session: Any) -> bool | None:
    """Whether an in-process caller listens for this request's progress; None when it cannot be told.

    Why: in-process calls carry a callback instead of a progress token in ``_meta``; the SDK keeps token or
    callback on the request's dispatch context (``ServerSession._request_outbound``), possibly wrapped
    (``_inner``). The public hook would be a ``ctx.wants_progress``.
    """
    dctx = getattr(session, "_request_outbound", None)
    while dctx is not None:
        known = [a for a in _LISTENER_ATTRS if hasattr(dctx, a)]
        if known:
            return any(getattr(dctx, a) is not None for a in known)
        dctx = getattr(dctx, "_inner", None)
    return None


def add_middleware(mcp: MCPServer, middleware: ServerMiddleware[Any]) -> None:
    """Wrap every inbound request (innermost of the middleware so far).

    Why: the 2025-11-25 experimental tasks change ``initialize`` (``capabilities.tasks``), ``tools/list``
    (``execution.taskSupport``) and a ``tools/call`` carrying ``params.task`` (a ``CreateTaskResult``, which
    the SDK's own result check would refuse as a ``CallToolResult``). ``Server.middleware`` is public but
    provisional, on the low-level server that `MCPServer` does not expose (see `lowlevel`).
    """
    lowlevel(mcp).middleware.append(middleware)


async def send_unanswered_request(
    session: Any, request_id: types.RequestId, method: str, params: Mapping[str, Any]
) -> bool:
    """Write a server-to-client request on this request's own stream without waiting for its answer.

    Why: stateless Streamable HTTP (handshake era) can carry a request on the SSE answer of a POST, but the
    client's answer is a POST of its own that may reach any instance, so the SDK refuses to send it
    (``NoBackChannelError``). We send it with an id that names what it asks, and the HTTP port records the
    answer wherever it lands. The SDK keeps the request's dispatch context privately on the session
    (``_request_outbound``; its dispatcher's ``_write``). The public hook would be a fire-and-forget
    ``send_request``. Returns False when this request has no such stream (nothing sent).
    """
    dctx = getattr(session, "_request_outbound", None)
    dispatcher = getattr(dctx, "_dispatcher", None)
    related = getattr(dctx, "request_id", None)
    if dispatcher is None or related is None:
        return False
    message = types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=dict(params))
    await dispatcher._write(message, ServerMessageMetadata(related_request_id=related))
    return True
