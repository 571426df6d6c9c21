"""MCP over WebSocket, server side: a Starlette endpoint bridging frames to the low-level server."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.mcp import lowlevel

__all__ = ["serve_mcp_websocket"]


async def serve_mcp_websocket(
    websocket: WebSocket,
    mcp: MCPServer,
    *,
    authorize: Callable[[WebSocket], Awaitable[Any]] | None = None,
    drop_frame: Callable[[str], bool] | None = None,
) -> None:
    """Accept one WebSocket (subprotocol ``mcp``) and run an MCP session on it until it closes.

    Args:
        websocket: the Starlette WebSocket.
        mcp: the server to run.
        authorize: called before accepting; raise or return None to refuse (closes with 1008).
        drop_frame: stand-ins only: when it returns True for an incoming frame, the socket is
            closed without answering (a connection lost mid-call).
    """
    if "mcp" not in websocket.scope.get("subprotocols", []):
        await websocket.close(code=1002, reason="subprotocol 'mcp' required")
        return
    if authorize is not None:
        try:
            allowed = await authorize(websocket)
        except Exception:
            allowed = None
        if allowed is None:
            await websocket.close(code=1008, reason="unauthorized")
            return
    await websocket.accept(subprotocol="mcp")
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    low = lowlevel(mcp)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_frames_in, websocket, read_writer, drop_frame)
        tg.start_soon(_frames_out, websocket, write_reader)
        await low.run(read_stream, write_stream, low.create_initialization_options())
        tg.cancel_scope.cancel()
    with contextlib.suppress(Exception):
        await websocket.close()


async def _frames_in(
    websocket: WebSocket,
    into: MemoryObjectSendStream[SessionMessage | Exception],
    drop_frame: Callable[[str], bool] | None,
) -> None:
    """Each text frame as a JSON-RPC message to the session (a frame that does not parse, as its error)."""
    async with into:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                raw = await websocket.receive_text()
                if drop_frame is not None and drop_frame(raw):
                    await websocket.close(code=1011)
                    return
                try:
                    message = types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
                except Exception as exc:
                    await into.send(exc)
                    continue
                await into.send(SessionMessage(message))


async def _frames_out(websocket: WebSocket, out: MemoryObjectReceiveStream[SessionMessage]) -> None:
    """Each message of the session as one text frame."""
    async with out:
        async for session_message in out:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await websocket.send_text(
                    session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                )
