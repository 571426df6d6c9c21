"""MCP clients of an orchestrator over each transport: in-memory (both generations), HTTP, WebSocket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from adapters._ws_mcp import websocket_client
from server._runtime import Orchestrator

TRANSPORTS = ["memory-auto", "memory-legacy", "http", "ws"]


@contextlib.asynccontextmanager
async def connect(orch: Orchestrator, transport: str, key: str | None, **kw: Any) -> AsyncIterator[Client]:
    """A connected client; `key` is sent as the bearer on HTTP and WebSocket."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if transport == "memory-auto":
        async with Client(orch.mcp, **kw) as c:
            yield c
    elif transport == "memory-legacy":
        async with Client(orch.mcp, mode="legacy", **kw) as c:
            yield c
    elif transport == "http":
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{orch.http_url}/mcp", http_client=http), **kw) as c,
        ):
            yield c
    else:
        ws_url = orch.http_url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        async with Client(websocket_client(ws_url, headers=headers), mode="legacy", **kw) as c:
            yield c
