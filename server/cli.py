"""Command line: ``movie-orchestrator serve | sandbox | demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Any:
    from server.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return Settings(**overrides)


async def _serve(args: argparse.Namespace) -> int:
    from server._runtime import Orchestrator

    settings = _settings(args)
    async with Orchestrator.open(settings, with_sandbox=args.sandbox, with_engine=not args.no_worker) as orch:
        await orch.mcp.run_stdio_async()
    return 0


async def _sandbox(args: argparse.Namespace) -> int:
    from server.sandbox import TaskServiceStandIn, serve_app

    settings = _settings(args)
    ts = TaskServiceStandIn(media_dir=settings.data_dir.parent / "sandbox-media", latency=args.latency)
    async with serve_app(ts.app(), port=args.port) as url:
        ts.public_url = url
        print(f"Task Service stand-in: {url}  (X-API-Key: {ts.api_key})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    from server._logging import configure_logging

    parser = argparse.ArgumentParser(prog="movie-orchestrator", description=__doc__)
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio unless --http)")
    serve.add_argument("--data-dir", help="embedded redis-server data folder")
    serve.add_argument("--sandbox", action="store_true", help="start the service stand-ins in-process")
    serve.add_argument("--no-worker", action="store_true", help="serve MCP only; run no workflows here")

    sb = sub.add_parser("sandbox", help="run the outside-service stand-ins alone")
    sb.add_argument("--data-dir")
    sb.add_argument("--port", type=int, default=0)
    sb.add_argument("--latency", type=float, default=0.5)

    demo = sub.add_parser("demo", help="run a complete production end to end on this machine")
    demo.add_argument("--data-dir")
    demo.add_argument("--interactive", action="store_true", help="ask the decisions on the terminal")
    demo.add_argument("--workflow", default="movie_production")
    demo.add_argument("--scenes", type=int, default=6)

    args = parser.parse_args(argv)
    from server.settings import Settings

    base = Settings()
    configure_logging(args.log_format or base.log_format, base.log_level, base.log_file)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "sandbox":
            return asyncio.run(_sandbox(args))
        if args.command == "demo":
            from server._demo import run_demo

            return asyncio.run(run_demo(args))
    return 130 if sys.exc_info()[0] else 0
