"""MCP clients of an orchestrator over each transport: in-memory (both generations), HTTP, WebSocket."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from adapters import websocket_client
from server import Orchestrator

TRANSPORTS = ["memory-auto", "memory-legacy", "http", "ws"]
# Every transport in both protocol generations (stdio runs a subprocess: see `stdio_client`).
BOTH_ERAS = ["memory-auto", "memory-legacy", "http", "http-legacy", "ws", "ws-auto"]


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
    elif transport in {"http", "http-legacy"}:
        mode = "legacy" if transport == "http-legacy" else "auto"
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{orch.http_url}/mcp", http_client=http), mode=mode, **kw) as c,
        ):
            yield c
    else:
        ws_url = orch.http_url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        mode = "auto" if transport == "ws-auto" else "legacy"
        async with Client(websocket_client(ws_url, headers=headers), mode=mode, **kw) as c:
            yield c


@contextlib.asynccontextmanager
async def stdio_client(
    redis_url: str, key_prefix: str, data_dir: Path, *, mode: str = "legacy", **kw: Any
) -> AsyncIterator[Client]:
    """A client of `movie-orchestrator serve --sandbox` over stdio (a subprocess on the test's Redis)."""
    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "LOG_FORMAT": "json",
           "TASK_POLL_SECONDS": "0.2", "SANDBOX_WEBHOOK_DELAY_SECONDS": "0.1"}  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--sandbox", "--data-dir", str(data_dir)],
        env=env,
    )
    async with Client(params, mode=mode, **kw) as c:
        yield c
