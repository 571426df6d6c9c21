"""Command line: ``movie-orchestrator serve | sandbox | demo | keys``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Any:
    from server.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return Settings(**overrides)


def _run_loop(coro: Coroutine[Any, Any, int], event_loop: str) -> int:
    """Run the command on uvloop (libuv: about a fifth less loop overhead per request and step, measured in
    BENCHMARKS.md) when installed and not turned off with EVENT_LOOP=asyncio."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                raise
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        msg = f"--http wants HOST:PORT, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return host.strip("[]"), int(port)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_stdio(args: argparse.Namespace, settings: Any) -> int:
    from server._runtime import Orchestrator

    default_caller = None
    if args.api_key:
        from adapters import open_redis
        from server._auth import KeyStore

        # stdio trusts the local user unless a key is given: then the key's scope and role apply.
        url = settings.redis_url.get_secret_value() if settings.redis_url else None
        if url is None:
            print("--api-key on stdio needs REDIS_URL (the keys live in the shared Redis)", file=sys.stderr)
            return 2
        redis = await open_redis(url)
        default_caller, reason = await KeyStore(redis, settings.key_prefix).verify(
            args.api_key, source="stdio"
        )
        await redis.aclose()
        if default_caller is None:
            print(f"--api-key refused: {reason}", file=sys.stderr)
            return 2
    _watch_signals(args, settings)
    async with Orchestrator.open(settings, with_sandbox=args.sandbox, with_engine=not args.no_worker,
                                 default_caller=default_caller) as orch:  # fmt: skip
        args.shutdown.on_force = orch.hand_back_blocking
        if args.board_file:
            from server._demo import write_board_access

            await write_board_access(orch, Path(args.board_file))
        _settle_gc()
        # Until the client closes stdin, or a signal asks to stop.
        stdio = asyncio.create_task(orch.mcp.run_stdio_async())
        signalled = asyncio.create_task(args.shutdown.wait())
        await asyncio.wait({stdio, signalled}, return_when=asyncio.FIRST_COMPLETED)
        for t in (stdio, signalled):
            t.cancel()
        if not signalled.done() or signalled.cancelled():
            await asyncio.gather(stdio, signalled, return_exceptions=True)
    if args.shutdown.received:
        # Stopped by a signal with everything closed in order. The SDK's stdin reader is a thread blocked in
        # read() until the client writes or closes stdin; waiting for it would hold the exit until the grace.
        sys.stderr.flush()
        os._exit(0)
    return 0


async def _serve(args: argparse.Namespace) -> int:
    import structlog

    from server._runtime import Orchestrator

    log = structlog.get_logger("server.cli")
    if args.engine_only:
        return await _engine_only(args)
    settings = _settings(args)
    if args.engine_processes and args.http is None:
        print("--engine-processes needs --http", file=sys.stderr)
        return 2
    if args.http is None:
        return await _serve_stdio(args, settings)
    host, port = args.http
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else None
    if args.no_auth and not _is_loopback(host):
        print(
            f"--no-auth is refused on {host}: bind to 127.0.0.1 (or ::1) for unauthenticated development",
            file=sys.stderr,
        )
        return 2
    if tls is None and not _is_loopback(host) and not args.insecure_http:
        print(f"refusing to serve plain HTTP on {host}: give --tls-cert/--tls-key, or --insecure-http "
              "behind a TLS-terminating proxy", file=sys.stderr)  # fmt: skip
        return 2
    if args.no_auth:
        banner = (
            "!!! AUTHENTICATION IS OFF (--no-auth): anyone on this machine can run and decide workflows !!!"
        )
        print(banner, file=sys.stderr)
        log.warning("http.auth_disabled", bind=f"{host}:{port}")
    in_process = not args.no_worker and args.engine_processes == 0
    _watch_signals(args, settings)
    async with Orchestrator.open(settings, with_sandbox=args.sandbox, with_engine=in_process,
                                 http=(host, port), auth=not args.no_auth, tls=tls) as orch:  # fmt: skip
        engines = None
        args.shutdown.on_force = orch.hand_back_blocking
        if args.engine_processes and not args.no_worker:
            from server._workers import EngineProcesses, child_env

            env = child_env(orch, args.engine_processes)
            engines = EngineProcesses(env, args.engine_processes, orch.consumer,
                                      grace_seconds=settings.shutdown_grace_seconds * 0.7)  # fmt: skip
            orch.engine_processes = (engines, int(env["MEMORY_HIGH_WATER_MB"]) * 2**20)
            args.shutdown.on_force = engines.kill_now
            await engines.start()
        _settle_gc()
        try:
            print(
                f"movie-orchestrator listening on {orch.http_url}/mcp (WebSocket: /ws)",
                file=sys.stderr,
                flush=True,
            )
            await args.shutdown.wait()
        finally:
            if engines is not None:
                await engines.stop()
    return 0


def _settle_gc() -> None:
    """Move what start-up built (modules, graphs, clients) out of the collector's way: every full
    collection would otherwise walk it again, a pause that lands on whichever request is waiting."""
    import gc

    gc.collect()
    gc.freeze()
    # Graph steps allocate many short-lived containers; collecting the young generation every 700
    # allocations spent more time than the garbage it found.
    gc.set_threshold(20_000, 20, 20)


async def _engine_only(args: argparse.Namespace) -> int:
    from server._runtime import Orchestrator
    from server._workers import READY

    settings = _settings(args)
    if settings.redis_url is None:
        print("--engine-only needs REDIS_URL (it joins an instance's Redis)", file=sys.stderr)
        return 2
    _watch_signals(args, settings)
    async with Orchestrator.open(settings, with_engine=True) as orch:
        args.shutdown.on_force = orch.hand_back_blocking
        _settle_gc()
        print(READY, file=sys.stderr, flush=True)
        await args.shutdown.wait()
    return 0


async def _sandbox(args: argparse.Namespace) -> int:
    from server.sandbox import AutoMovieStandIn, BrainStandIn, TaskServiceStandIn, serve_app

    settings = _settings(args)
    media = settings.data_dir.parent / "media"
    ts = TaskServiceStandIn(media_dir=media / "_tasks", latency=args.latency)
    brain = BrainStandIn()
    am = AutoMovieStandIn(store_file=media / "_auto_movie" / "projects.json")
    async with (
        serve_app(ts.app(), port=args.port) as ts_url,
        serve_app(brain.app()) as brain_url,
        serve_app(am.app()) as am_url,
    ):
        ts.public_url = ts_url
        print("Sandbox stand-ins (not the real services):", flush=True)
        print(f"  TASK_SERVICE_URL={ts_url}  TASK_SERVICE_API_KEY={ts.api_key}", flush=True)
        print(
            f"  BRAIN_URL={brain_url.replace('http://', 'ws://')}  BRAIN_API_KEY={brain.api_key}", flush=True
        )
        print(
            f"  AUTO_MOVIE_URL={am_url}  AUTO_MOVIE_TOKEN={am.api_token}  PAYLOAD_EMAIL={am.email}"
            f"  PAYLOAD_PASSWORD={am.password}",
            flush=True,
        )
        await _wait_for_signal()
    await ts.aclose()
    am.flush()
    return 0


async def _keys(args: argparse.Namespace) -> int:
    from adapters import EmbeddedRedis, open_redis
    from server._auth import KeyStore

    settings = _settings(args)
    embedded = None
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
    else:
        embedded = EmbeddedRedis(data_dir=settings.data_dir).start()
        url = embedded.url
    redis = await open_redis(url)
    try:
        store = KeyStore(redis, settings.key_prefix, max_age_days=settings.api_key_max_age_days,
                         warn_days=settings.api_key_warn_days)  # fmt: skip
        if args.keys_command == "create":
            projects = [p.strip() for p in args.projects.split(",") if p.strip()]
            key, info = await store.create(args.name, projects, args.role, args.expires_days)
            print(json.dumps({"api_key": key, **info.as_dict()}, indent=1))
            print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
        elif args.keys_command == "rotate":
            key, info, retiring = await store.rotate(args.name, args.overlap_hours)
            print(json.dumps({"api_key": key, **info.as_dict(), "retiring": retiring,
                              "old_keys_valid_for_hours": args.overlap_hours}, indent=1))  # fmt: skip
            print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
        elif args.keys_command == "list":
            print(json.dumps([k.as_dict() for k in await store.list_keys()], indent=1))
        else:
            revoked = await store.revoke(args.name)
            print(json.dumps({"revoked": revoked}))
            if not revoked:
                return 1
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()
    return 0


def _watch_signals(args: argparse.Namespace, settings: Any) -> None:
    """From here on SIGTERM/SIGINT stop this process within the grace (called once it is about to serve,
    before its threads start: they inherit the blocked signals)."""
    from server._shutdown import ShutdownWatch

    args.shutdown = ShutdownWatch(settings.shutdown_grace_seconds)
    args.shutdown.install()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    from server._logging import configure_logging

    parser = argparse.ArgumentParser(prog="movie-orchestrator", description=__doc__)
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio unless --http)")
    serve.add_argument("--data-dir", help="embedded redis-server data folder")
    serve.add_argument(
        "--http", type=_bind, metavar="HOST:PORT", help="serve Streamable HTTP /mcp and WebSocket /ws"
    )
    serve.add_argument("--sandbox", action="store_true", help="start the service stand-ins in-process")
    serve.add_argument("--no-worker", action="store_true", help="serve MCP only; run no workflows here")
    serve.add_argument(
        "--engine-processes", type=int, default=0, metavar="N",
        help="with --http: run workflows in N child processes (one core each) instead of in this one",
    )  # fmt: skip
    serve.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--board-file", help=argparse.SUPPRESS)  # the demo's board address and key
    serve.add_argument("--no-auth", action="store_true", help="HTTP without API keys (loopback binds only)")
    serve.add_argument(
        "--api-key", help="stdio: act with this key's projects and role instead of as local admin"
    )
    serve.add_argument("--tls-cert", help="PEM certificate for HTTPS/WSS")
    serve.add_argument("--tls-key", help="PEM private key for HTTPS/WSS")
    serve.add_argument("--insecure-http", action="store_true", help="allow plain HTTP on a non-loopback bind")

    sb = sub.add_parser("sandbox", help="run the outside-service stand-ins alone")
    sb.add_argument("--data-dir")
    sb.add_argument("--port", type=int, default=0)
    sb.add_argument("--latency", type=float, default=0.5)

    demo = sub.add_parser("demo", help="run a complete production end to end on this machine")
    demo.add_argument("--data-dir")
    demo.add_argument("--interactive", action="store_true", help="ask the decisions on the terminal")
    demo.add_argument("--workflow", default="movie_production")
    demo.add_argument("--scenes", type=int, default=6)
    demo.add_argument(
        "--board", action="store_true",
        help="answer the decisions on the production board and keep it up after completion (Ctrl-C stops)",
    )  # fmt: skip

    keys = sub.add_parser("keys", help="manage API keys")
    keys.add_argument("--data-dir")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key (printed once)")
    kc.add_argument("name")
    kc.add_argument("--projects", default="*", help="comma-separated project ids, or *")
    kc.add_argument("--role", default="read", choices=["read", "operate", "decide", "admin"])
    kc.add_argument(
        "--expires-days", type=float, default=None, help="default and maximum: API_KEY_MAX_AGE_DAYS"
    )
    ksub.add_parser("list", help="list keys (never the keys themselves)")
    kro = ksub.add_parser(
        "rotate", help="issue a successor key; the old ones stay valid for an overlap window"
    )
    kro.add_argument("name")
    kro.add_argument("--overlap-hours", type=float, default=24.0)
    kr = ksub.add_parser("revoke", help="revoke a key by id, or every key of a name")
    kr.add_argument("name")

    args = parser.parse_args(argv)
    from server.settings import Settings

    base = Settings()
    configure_logging(args.log_format or base.log_format, base.log_level, base.log_file)
    runners = {"serve": _serve, "sandbox": _sandbox, "keys": _keys}
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "demo":
            from server._demo import run_demo

            return _run_loop(run_demo(args), base.event_loop)
        return _run_loop(runners[args.command](args), base.event_loop)
    return 130
