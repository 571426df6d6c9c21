"""Running ASGI apps on loopback (or any) ports inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import uvicorn

__all__ = ["serve_app", "serve_apps"]


class _Server(uvicorn.Server):
    """uvicorn's server, stopped at once when asked.

    uvicorn looks at ``should_exit`` every 0.1 s: a stop asked for between two looks waited for the next
    one, and with the stand-ins' three servers that was most of the time it took to close an orchestrator
    (0.8 s of every test's teardown).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the server to shut down now."""
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)


async def _start(
    app: Any, host: str, port: int, lifespan: Literal["auto", "on", "off"], ssl: dict[str, Any]
) -> tuple[_Server, asyncio.Task[None], socket.socket, str]:
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
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    scheme = "https" if ssl.get("ssl_certfile") else "http"
    return server, task, sock, f"{scheme}://{host}:{bound_port}"


async def _stop(served: Sequence[tuple[_Server, asyncio.Task[None], socket.socket, str]]) -> None:
    for server, _, _, _ in served:
        server.stop()
    for _, task, sock, _ in served:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


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
    served = await _start(app, host, port, lifespan, ssl)
    try:
        yield served[3]
    finally:
        await _stop([served])


@contextlib.asynccontextmanager
async def serve_apps(apps: Sequence[tuple[Any, int]], host: str = "127.0.0.1") -> AsyncIterator[list[str]]:
    """Serve several apps (each with its port, 0 for any) until the block exits, and stop them together."""
    served: list[tuple[_Server, asyncio.Task[None], socket.socket, str]] = []
    try:
        for app, port in apps:
            served.append(await _start(app, host, port, "off", {}))
        yield [s[3] for s in served]
    finally:
        await _stop(served)
