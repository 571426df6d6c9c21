"""MCP over WebSocket, client side: one JSON-RPC message per text frame, subprotocol ``mcp``.

The mcp SDK (2.x) ships no WebSocket transport; this is the smallest transport its session layer
accepts: an async context manager yielding (read stream, write stream) of SessionMessages.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

__all__ = ["websocket_client"]


@contextlib.asynccontextmanager
async def websocket_client(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    open_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[
    tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
]:
    """Connect to an MCP server over WebSocket and yield the session's streams."""
    kwargs: dict[str, Any] = {"subprotocols": ["mcp"], "open_timeout": open_timeout, "max_size": 16 * 2**20}
    if headers:
        kwargs["additional_headers"] = headers
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
    async with connect(url, **kwargs) as ws:
        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

        async def reader() -> None:
            async with read_writer:
                try:
                    async for raw in ws:
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
                        except Exception as exc:
                            await read_writer.send(exc)
                            continue
                        await read_writer.send(SessionMessage(message))
                except ConnectionClosed as exc:
                    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                        await read_writer.send(ConnectionError(f"websocket closed: {exc}"))

        async def writer() -> None:
            async with write_reader:
                async for session_message in write_reader:
                    await ws.send(session_message.message.model_dump_json(by_alias=True, exclude_unset=True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
