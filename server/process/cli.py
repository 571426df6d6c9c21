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
from typing import TYPE_CHECKING, Any

from server.settings import Settings

if TYPE_CHECKING:
    from server.process._shutdown import ShutdownWatch

__all__ = ["main"]

# How long runs get to reach a step boundary once a stdio client has closed stdin (then cancelled and handed
# back: a cancelled step re-runs from its checkpoint, and its outside jobs are found again, not resubmitted).
_EOF_DRAIN_SECONDS = 0.5


def _settings(args: argparse.Namespace) -> Settings:
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


async def _key_caller(settings: Settings, api_key: str) -> tuple[Any, str]:
    """The caller of an API key given on the command line (stdio), or (None, why not)."""
    from adapters import KeyStore, open_redis
    from server.core import Caller

    # stdio trusts the local user unless a key is given: then the key's scope and role apply.
    if settings.redis_url is None:
        return None, "--api-key on stdio needs REDIS_URL (the keys live in the shared Redis)"
    redis = await open_redis(settings.redis_url.get_secret_value())
    try:
        key, reason = await KeyStore(redis, settings.key_prefix).verify(api_key, source="stdio")
    finally:
        await redis.aclose()
    return (Caller.of_key(key), "") if key is not None else (None, f"--api-key refused: {reason}")


async def _serve_stdio(args: argparse.Namespace, settings: Settings) -> int:
    from server.process._opening import open_orchestrator

    default_caller = None
    if args.api_key:
        default_caller, refused = await _key_caller(settings, args.api_key)
        if default_caller is None:
            print(refused, file=sys.stderr)
            return 2
    shutdown = _watch_signals(settings)
    async with open_orchestrator(settings, sandbox=args.sandbox, with_engine=not args.no_worker,
                                 default_caller=default_caller) as (orch, _):  # fmt: skip
        shutdown.on_force = orch.hand_back_blocking
        if args.board_file:
            from server.process._demo import write_board_access

            await write_board_access(orch, Path(args.board_file))
        _settle_gc()
        # Until the client closes stdin, or a signal asks to stop.
        stdio = asyncio.create_task(orch.mcp.run_stdio_async())
        signalled = asyncio.create_task(shutdown.wait())
        await asyncio.wait({stdio, signalled}, return_when=asyncio.FIRST_COMPLETED)
        for t in (stdio, signalled):
            t.cancel()
        if not signalled.done() or signalled.cancelled():
            await asyncio.gather(stdio, signalled, return_exceptions=True)
        if not shutdown.received:
            # The client closed stdin: nobody waits on this process, and one-shot clients (a process per
            # call) start the next one within seconds. Hand the runs back now, so that process takes
            # them at once; a client that kills us ~2 s after closing stdin must not catch us draining.
            await orch.stop_engine(drain_seconds=_EOF_DRAIN_SECONDS)
    if shutdown.received:
        # Stopped by a signal with everything closed in order. The SDK's stdin reader is a thread blocked in
        # read() until the client writes or closes stdin; waiting for it would hold the exit until the grace.
        from server.telemetry import shutdown_tracing

        shutdown_tracing()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _processes(value: str) -> int:
    if not value.isdigit():
        msg = f"--engine-processes wants a number of processes, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def engine_processes_by_default(cores: int | None) -> int:
    """Engine processes `serve --http` starts when none are asked for: on a host of 4 cores or more, one per
    core but the one the front door keeps (at most 8); below that none (two busy processes on two cores cost
    more in switching than they gain: BENCHMARKS.md)."""
    cores = cores or 1
    return min(8, cores - 1) if cores >= 4 else 0


def _http_refusal(args: argparse.Namespace, host: str) -> str:
    """Why the HTTP port may not be served as asked ("" when it may)."""
    if args.engine_processes and args.http is None:
        return "--engine-processes needs --http"
    if args.no_auth and not _is_loopback(host):
        return f"--no-auth is refused on {host}: bind to 127.0.0.1 (or ::1) for unauthenticated development"
    if not args.tls_cert and not _is_loopback(host) and not args.insecure_http:
        return (f"refusing to serve plain HTTP on {host}: give --tls-cert/--tls-key, or --insecure-http "
                "behind a TLS-terminating proxy")  # fmt: skip
    return ""


async def _serve(args: argparse.Namespace) -> int:
    import structlog

    from server.process._opening import open_orchestrator

    log = structlog.get_logger("server.cli")
    if args.engine_only:
        return await _engine_only(args)
    settings = _settings(args)
    if args.http is None and not args.engine_processes:
        return await _serve_stdio(args, settings)
    if args.engine_processes is None:
        args.engine_processes = engine_processes_by_default(os.cpu_count())
    host, port = args.http or ("", 0)
    refused = _http_refusal(args, host)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    if args.no_auth:
        banner = (
            "!!! AUTHENTICATION IS OFF (--no-auth): anyone on this machine can run and decide workflows !!!"
        )
        print(banner, file=sys.stderr)
        log.warning("http.auth_disabled", bind=f"{host}:{port}")
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else None
    processes = 0 if args.no_worker else args.engine_processes
    shutdown = _watch_signals(settings)
    async with open_orchestrator(settings, sandbox=args.sandbox, with_engine=not args.no_worker and not processes,
                                 engine_processes=processes, http=(host, port), auth=not args.no_auth,
                                 tls=tls) as (orch, _):  # fmt: skip
        children = orch.engine_processes
        shutdown.on_force = children.kill_now if children is not None else orch.hand_back_blocking
        _settle_gc()
        print(
            f"movie-orchestrator listening on {orch.http_url}/mcp (WebSocket: /ws)",
            file=sys.stderr,
            flush=True,
        )
        await shutdown.wait()
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
    from server.process._assembly import Orchestrator
    from server.process._workers import READY

    settings = _settings(args)
    if settings.redis_url is None:
        print("--engine-only needs REDIS_URL (it joins an instance's Redis)", file=sys.stderr)
        return 2
    shutdown = _watch_signals(settings)
    async with Orchestrator.open(settings, with_engine=True) as orch:
        shutdown.on_force = orch.hand_back_blocking
        _settle_gc()
        print(READY, file=sys.stderr, flush=True)
        await shutdown.wait()
    return 0


async def _sandbox(args: argparse.Namespace) -> int:
    from server.sandbox import DEMO_PROJECT_ID, Sandbox

    settings = _settings(args)
    delay = settings.sandbox_webhook_delay_seconds if args.webhook_delay is None else args.webhook_delay
    async with Sandbox.running(
        settings.media_root, task_latency=args.latency, task_port=args.port, webhook_delay=delay,
        defects=settings.sandbox_defects and not args.no_defects, brain_mcp=args.brain_mcp,
    ) as standins:  # fmt: skip
        print("Sandbox stand-ins (not the real services):", flush=True)
        env = standins.environment()
        for line in (("TASK_SERVICE_URL", "TASK_SERVICE_API_KEY"), ("BRAIN_URL", "BRAIN_API_KEY"),
                     ("AUTO_MOVIE_URL", "AUTO_MOVIE_TOKEN", "PAYLOAD_EMAIL", "PAYLOAD_PASSWORD")):  # fmt: skip
            print("  " + "  ".join(f"{name}={env[name]}" for name in line), flush=True)
        print(f"  demo project (Auto-Movie): {DEMO_PROJECT_ID}", flush=True)
        await _wait_for_signal()
    return 0


async def _keys(args: argparse.Namespace) -> int:
    from adapters import KEEP, EmbeddedRedis, KeyStore, open_redis

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
            key, info = await store.create(args.name, projects, args.role, args.expires_days,
                                           max_in_flight=args.max_in_flight, starts_per_minute=args.starts_per_minute)  # fmt: skip
            print(json.dumps({"api_key": key, **info.as_dict()}, indent=1))
            print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
        elif args.keys_command == "quota":
            given = {
                k: getattr(args, k)
                for k in ("max_in_flight", "starts_per_minute")
                if getattr(args, k) != _KEEP
            }
            changed = await store.set_quota(args.name, max_in_flight=given.get("max_in_flight", KEEP),
                                            starts_per_minute=given.get("starts_per_minute", KEEP))  # fmt: skip
            print(json.dumps({"changed": changed, **given}))
            if not changed:
                return 1
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


def _watch_signals(settings: Settings) -> ShutdownWatch:
    """From here on SIGTERM/SIGINT stop this process within the grace (called once it is about to serve,
    before its threads start: they inherit the blocked signals)."""
    from server.process._shutdown import ShutdownWatch

    shutdown = ShutdownWatch(settings.shutdown_grace_seconds)
    shutdown.install()
    return shutdown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movie-orchestrator", description=__doc__)
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    _serve_arguments(sub.add_parser("serve", help="run the MCP server (stdio unless --http)"))
    sb = sub.add_parser("sandbox", help="run the outside-service stand-ins alone")
    sb.add_argument("--data-dir")
    sb.add_argument("--port", type=int, default=0)
    sb.add_argument("--latency", type=float, default=0.5, help="seconds a Task Service job works")
    sb.add_argument(
        "--webhook-delay", type=float, default=None, metavar="SECONDS",
        help="seconds between a job's status flip and its webhook (default SANDBOX_WEBHOOK_DELAY_SECONDS, 6: the real build's)",
    )  # fmt: skip
    sb.add_argument("--no-defects", action="store_true", help="no late webhooks, failing video or stuck rows")
    sb.add_argument("--brain-mcp", action="store_true", help="also serve the documented MCP dialect at /mcp")

    demo = sub.add_parser("demo", help="run a complete production end to end on this machine")
    demo.add_argument("--data-dir")
    demo.add_argument("--interactive", action="store_true", help="ask the decisions on the terminal")
    demo.add_argument("--workflow", default="movie_production")
    demo.add_argument("--scenes", type=int, default=6)
    demo.add_argument(
        "--board", action="store_true",
        help="answer the decisions on the production board and keep it up after completion (Ctrl-C stops)",
    )  # fmt: skip

    _keys_arguments(sub.add_parser("keys", help="manage API keys"))
    return parser


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--data-dir", help="embedded redis-server data folder")
    serve.add_argument(
        "--http", type=_bind, metavar="HOST:PORT", help="serve Streamable HTTP /mcp and WebSocket /ws"
    )
    serve.add_argument("--sandbox", action="store_true", help="start the service stand-ins in-process")
    serve.add_argument("--no-worker", action="store_true", help="serve MCP only; run no workflows here")
    serve.add_argument(
        "--engine-processes", type=_processes, default=None, metavar="N",
        help="with --http: run workflows in N child processes (one core each) instead of in this one; "
        "default: one per core but one on hosts with 4 cores or more (at most 8), none below",
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


def _keys_arguments(keys: argparse.ArgumentParser) -> None:
    keys.add_argument("--data-dir")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key (printed once)")
    kc.add_argument("name")
    kc.add_argument("--projects", default="*", help="comma-separated project ids, or *")
    kc.add_argument("--role", default="read", choices=["read", "operate", "decide", "admin"])
    kc.add_argument(
        "--expires-days", type=float, default=None, help="default and maximum: API_KEY_MAX_AGE_DAYS"
    )
    _quota_arguments(kc)
    kq = ksub.add_parser(
        "quota",
        help="change the quotas of a key by id, or of every key of a name (new calls see them at once)",
    )
    kq.add_argument("name")
    # What is not given stays as it is; 'default' goes back to QUOTA_KEY_*.
    _quota_arguments(kq, absent=_KEEP)
    ksub.add_parser("list", help="list keys (never the keys themselves)")
    kro = ksub.add_parser(
        "rotate", help="issue a successor key; the old ones stay valid for an overlap window"
    )
    kro.add_argument("name")
    kro.add_argument("--overlap-hours", type=float, default=24.0)
    kr = ksub.add_parser("revoke", help="revoke a key by id, or every key of a name")
    kr.add_argument("name")


def _configure_tracing(settings: Settings) -> None:
    """Traces exported when the OTEL_* variables ask for it (engine children inherit them)."""
    import socket

    from server.telemetry import configure_tracing

    configure_tracing(
        service_name=settings.otel_service_name, instance=settings.instance_id or f"{socket.gethostname()}-{os.getpid()}",
        sdk_disabled=settings.otel_sdk_disabled, exporter=settings.otel_traces_exporter, endpoint=settings.otel_endpoint,
        protocol=settings.otel_exporter_otlp_protocol,
    )  # fmt: skip


def _quota(value: str) -> int | None:
    if value == "default":
        return None
    if not value.isdigit():
        msg = f"a quota is a whole number (0: no limit) or 'default', not {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


_KEEP = -1  # a quota not given to `keys quota` (argparse applies `type` to string defaults, not to this)


def _quota_arguments(parser: argparse.ArgumentParser, *, absent: int | None = None) -> None:
    parser.add_argument(
        "--max-in-flight", type=_quota, default=absent, metavar="N",
        help="productions started with this key's name queued, running, waiting or paused at once "
        "(0: no limit; default: QUOTA_KEY_MAX_IN_FLIGHT)",
    )  # fmt: skip
    parser.add_argument(
        "--starts-per-minute", type=_quota, default=absent, metavar="M",
        help="productions this key's name may start in any 60 s (0: no limit; default: QUOTA_KEY_STARTS_PER_MINUTE)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    from server.telemetry import configure_logging, shutdown_tracing

    args = _parser().parse_args(argv)
    base = Settings()
    configure_logging(args.log_format or base.log_format, base.log_level, base.log_file)
    if args.command in {"serve", "demo"}:
        _configure_tracing(base)
    runners = {"serve": _serve, "sandbox": _sandbox, "keys": _keys}
    try:
        with contextlib.suppress(KeyboardInterrupt):
            if args.command == "demo":
                from server.process._demo import run_demo

                return _run_loop(run_demo(args), base.event_loop)
            return _run_loop(runners[args.command](args), base.event_loop)
        return 130
    finally:
        shutdown_tracing()
