"""Pins every reach into the mcp SDK's private parts (`server/mcp/_sdk.py`) against the installed SDK.

When an SDK upgrade breaks one of them, this test names it; the fix, or the deletion once the SDK offers a
public hook, is made in `server/mcp/_sdk.py` alone.
"""

from __future__ import annotations

import warnings
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning

from server.mcp._sdk import (
    add_middleware,
    add_request_handler,
    connection_state,
    lowlevel,
    progress_listener,
    request_handler,
    send_unanswered_request,
)


def _server(seen: dict[str, Any]) -> MCPServer:
    mcp = MCPServer(name="pin")

    @mcp.tool()
    async def probe(ctx: Context) -> str:
        session = ctx.request_context.session
        seen["state"] = connection_state(session)
        seen["listens"] = progress_listener(session)
        return "ok"

    return mcp


def test_lowlevel_is_the_servers_own() -> None:
    """`lowlevel` reaches the low-level `Server` an `MCPServer` runs (WebSocket, the SSE manager)."""
    low = lowlevel(MCPServer(name="pin"))
    assert isinstance(low, Server)
    assert callable(low.run)
    assert callable(low.create_initialization_options)


async def test_a_request_handler_added_is_served_and_the_listen_handler_can_be_wrapped() -> None:
    """A method added through `add_request_handler` answers; `request_handler` finds the SDK's own
    ``subscriptions/listen`` handler (the one the task notifications wrap)."""
    mcp = MCPServer(name="pin")
    levels: list[str] = []

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        del ctx
        levels.append(params.level)
        return types.EmptyResult()

    add_request_handler(mcp, "logging/setLevel", types.SetLevelRequestParams, set_level)
    async with Client(mcp, mode="legacy") as c:
        with warnings.catch_warnings():  # the handshake era's method, deprecated at 2026-07-28
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await c.set_logging_level("warning")
    assert levels == ["warning"]
    listen = request_handler(mcp, "subscriptions/listen")
    assert listen is not None
    assert isinstance(listen.handler, ListenHandler)


async def test_connection_state_outlives_a_request_in_the_handshake_era() -> None:
    """`connection_state` is the connection's scratch dict: what one request puts there the next one sees."""
    seen: dict[str, Any] = {}
    async with Client(_server(seen), mode="legacy") as c:
        await c.call_tool("probe", {})
        assert isinstance(seen["state"], dict)
        seen["state"]["pinned"] = True
        await c.call_tool("probe", {})
        assert seen["state"].get("pinned") is True


async def test_progress_listener_tells_an_in_process_caller_who_listens() -> None:
    """`progress_listener` is True for a call made with a progress callback and False without one."""
    seen: dict[str, Any] = {}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        del progress, total, message

    async with Client(_server(seen)) as c:
        await c.call_tool("probe", {}, progress_callback=on_progress)
        assert seen["listens"] is True
        await c.call_tool("probe", {})
        assert seen["listens"] is False


async def test_a_middleware_added_sees_every_request_and_may_answer_for_the_handler() -> None:
    """`add_middleware` wraps requests: it sees the method and raw params and its answer goes out as it is
    (the 2025-11-25 tasks answer a ``tools/call`` with a result the SDK would not produce)."""
    seen: list[str] = []
    mcp = _server({})

    async def middleware(ctx: Any, call_next: Any) -> Any:
        seen.append(ctx.method)
        if ctx.method == "tools/list":
            listed = await call_next(ctx)
            listed["tools"][0]["execution"] = {"taskSupport": "optional"}
            return listed
        return await call_next(ctx)

    add_middleware(mcp, middleware)
    async with Client(mcp, mode="legacy") as c:
        (tool,) = (await c.list_tools()).tools
    assert "initialize" in seen
    assert tool.execution is not None
    assert tool.execution.task_support == "optional"


async def test_an_unanswered_request_rides_the_requests_own_stream() -> None:
    """`send_unanswered_request` writes a request on the current request's stream, with our id, and does
    not wait for its answer (which, in the handshake era with a back channel, the client still sends)."""
    mcp = MCPServer(name="pin")
    sent: list[bool] = []

    @mcp.tool()
    async def ask(ctx: Context) -> str:
        sent.append(await send_unanswered_request(ctx.request_context.session, "mo-pin/1", "ping", {}))
        return "ok"

    async with Client(mcp, mode="legacy") as c:
        await c.call_tool("ask", {})
    assert sent == [True]
