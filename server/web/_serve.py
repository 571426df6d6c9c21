"""Running ASGI apps on free loopback ports inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn

__all__ = ["serve_app"]


@contextlib.asynccontextmanager
async def serve_app(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: Literal["auto", "on", "off"] = "off",
    **ssl: Any,
) -> AsyncIterator[str]:
    """Serve `app` with uvicorn until the block exits; yields its base URL (https when ssl_* given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it small responses wait for the peer's delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    # proxy_headers off: uvicorn otherwise believes X-Forwarded-For from any loopback peer; the app
    # decides which proxies to trust (server/web/_app.py, TRUSTED_PROXIES).
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan=lifespan, ws="websockets-sansio",
        proxy_headers=False, **ssl,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        scheme = "https" if ssl.get("ssl_certfile") else "http"
        yield f"{scheme}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
