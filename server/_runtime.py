"""Assembling one orchestrator process: Redis, checkpointer, store, engine, adapters, MCP, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from mcp.server.mcpserver import MCPServer

from adapters import (
    AnyRedis,
    AutoMovieClient,
    BrainClient,
    BreakerBoard,
    EmbeddedRedis,
    LLMWriter,
    RedisCheckpointSaver,
    RetryPolicy,
    ScriptPipeliner,
    ServiceGuard,
    Signer,
    TaskServiceClient,
    WorkflowRecord,
    WorkflowStore,
    follow,
    open_redis,
)
from graphs import LocalWriter, Ports, WriterPort
from server._auth import KeyStore
from server._budget import BudgetBook
from server._caller import current_caller
from server._engine import Engine
from server._guard import MemoryMark, SizeCappedSerializer
from server._mcp import build_mcp_server
from server._metrics import Metrics
from server._ports_impl import GuardedAutoMovie, GuardedBrain, MediaFiles, RedisMemo, WorkflowTasks
from server._service import Caller, OrchestratorService
from server._subscriptions import RedisNotifier
from server.sandbox import AutoMovieStandIn, BrainStandIn, TaskServiceStandIn, serve_app
from server.settings import Settings

__all__ = ["Orchestrator"]

log = structlog.get_logger(__name__)

SERVICES = ("task-service", "brain", "auto-movie", "llm")


@dataclass
class Orchestrator:
    """The parts of one running process."""

    settings: Settings
    redis: AnyRedis
    store: WorkflowStore
    saver: RedisCheckpointSaver
    service: OrchestratorService
    mcp: MCPServer
    engine: Engine | None
    board: BreakerBoard
    guards: dict[str, ServiceGuard]
    metrics: Metrics
    webhook_secret: bytes
    consumer: str
    embedded: EmbeddedRedis | None = None
    http_url: str = ""
    sandbox_urls: dict[str, str] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    media_dir: Path = Path()
    keys: KeyStore | None = None
    notifier: RedisNotifier | None = None
    integrity_keys: list[bytes] = field(default_factory=list, repr=False)
    budgets: BudgetBook | None = None
    # With --engine-processes: the children and their memory mark, for /readyz.
    engine_processes: tuple[Any, int] | None = None

    def hand_back_blocking(self, timeout: float = 3.0) -> int:
        """Give the runs this process holds back to the run queue, from a thread other than the loop's.

        For a forced exit, when the event loop is stuck: a connection of its own, in a loop of its own,
        at most `timeout` seconds. Each run is queued anew and its held entry and lease released, so another
        instance takes it at once instead of after the lease. Returns how many were handed back.
        """
        if self.engine is None:
            return 0
        tickets = self.engine.held()
        if not tickets:
            return 0
        url = self.embedded.url if self.embedded is not None else self.settings.redis_url
        raw_url = url if isinstance(url, str) else (url.get_secret_value() if url is not None else "")
        tls = {"ssl_ca_certs": self.settings.redis_ca_file} if self.settings.redis_ca_file else {}
        consumer, prefix = self.consumer, self.settings.key_prefix

        async def hand_back() -> None:
            client = await open_redis(raw_url, **tls)
            try:
                store = WorkflowStore(client, prefix=prefix)
                for t in tickets:
                    await store.enqueue(t.workflow_id, "handed_back", t.correlation_id)
                    await store.finish(t, consumer)
            finally:
                await client.aclose()

        asyncio.run(asyncio.wait_for(hand_back(), timeout))
        log.warning("engine.runs_handed_back_on_exit", count=len(tickets),
                    workflows=[t.workflow_id for t in tickets])  # fmt: skip
        return len(tickets)

    def refresh_gauges_soon(self) -> None:
        """Bring breaker gauges up to date (called on scrape)."""
        for name, state in self.board.states().items():
            self.metrics.breaker_state.labels(name).set({"open": 1.0, "half-open": 0.5}.get(state, 0.0))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(  # noqa: PLR0915 - one linear assembly reads better than fragments
        cls,
        settings: Settings,
        *,
        with_sandbox: bool = False,
        with_engine: bool = True,
        http: tuple[str, int] | None = None,
        auth: bool = True,
        default_caller: Caller | None = None,
        tls: dict[str, str] | None = None,
    ) -> AsyncIterator[Orchestrator]:
        """Start everything; stop it all, in reverse, when the block exits.

        Args:
            settings: the process's settings.
            with_sandbox: start the stand-ins of the outside services and point the adapters at them.
            with_engine: run workflows in this process (else serve MCP only).
            http: (host, port) to serve the HTTP port on; with the sandbox and no HTTP port, a loopback
                listener is started for the Task Service's webhooks anyway.
            auth: require API keys on the HTTP port's MCP endpoints (False only for loopback development).
            default_caller: the caller of unauthenticated transports (stdio).
            tls: ``ssl_certfile``/``ssl_keyfile`` for the HTTP port.
        """
        async with contextlib.AsyncExitStack() as stack:
            embedded: EmbeddedRedis | None = None
            if settings.redis_url is not None:
                url = settings.redis_url.get_secret_value()
            else:
                embedded = EmbeddedRedis(data_dir=settings.data_dir)
                await asyncio.to_thread(embedded.start)
                stack.callback(embedded.stop)
                url = embedded.url
            redis_tls = {"ssl_ca_certs": settings.redis_ca_file} if settings.redis_ca_file else {}
            redis = await open_redis(url, **redis_tls)
            stack.push_async_callback(redis.aclose)
            prefix = settings.key_prefix
            consumer = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
            metrics = Metrics()
            media_dir = settings.media_dir or settings.data_dir.parent / "media"

            if settings.webhook_secret is not None:
                secret = settings.webhook_secret.get_secret_value().encode()
            else:
                # One secret per deployment, shared by every instance through Redis.
                await redis.set(f"{prefix}:webhook-secret", secrets.token_hex(32), nx=True)
                stored = await redis.get(f"{prefix}:webhook-secret")
                secret = stored if isinstance(stored, bytes) else str(stored or "").encode()

            # -- outside services (or their stand-ins) ----------------------------------------
            cfg: dict[str, str] = {
                "task_url": settings.task_service_url,
                "task_key": settings.task_service_api_key.get_secret_value(),
                "brain_url": settings.brain_url,
                "brain_key": settings.brain_api_key.get_secret_value(),
                "am_url": settings.auto_movie_url,
                "am_token": settings.auto_movie_token.get_secret_value(),
                "am_email": settings.payload_email,
                "am_password": settings.payload_password.get_secret_value(),
            }
            sandbox: dict[str, Any] = {}
            urls: dict[str, str] = {}
            if with_sandbox:
                ts = TaskServiceStandIn(media_dir=media_dir / "_tasks")
                stack.push_async_callback(ts.aclose)
                cfg["task_url"] = ts.public_url = await stack.enter_async_context(serve_app(ts.app()))
                cfg["task_key"] = ts.api_key
                brain = BrainStandIn()
                brain_http = await stack.enter_async_context(serve_app(brain.app()))
                cfg["brain_url"], cfg["brain_key"] = brain_http.replace("http://", "ws://"), brain.api_key
                am = AutoMovieStandIn(store_file=media_dir / "_auto_movie" / "projects.json")
                stack.callback(am.flush)
                cfg["am_url"] = await stack.enter_async_context(serve_app(am.app()))
                cfg["am_token"], cfg["am_email"], cfg["am_password"] = am.api_token, am.email, am.password
                sandbox = {"task_service": ts, "brain": brain, "auto_movie": am}
                urls = {
                    "task_service": cfg["task_url"],
                    "brain": cfg["brain_url"],
                    "auto_movie": cfg["am_url"],
                }
                log.info("sandbox.started", **urls, media=str(media_dir))

            board = BreakerBoard(redis, prefix=prefix, instance=consumer)
            guards = {
                name: ServiceGuard(name, board, retry=RetryPolicy(max_attempts=4, base=0.2, cap=5.0),
                                   timeout=300.0 if name == "llm" else 30.0, concurrency=256,
                                   fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds)
                for name in SERVICES
            }  # fmt: skip
            await board.start()
            stack.push_async_callback(board.stop)

            # TLS to outside services is verified: system CAs, or CA_BUNDLE. There is no switch to turn it off.
            verify = ssl.create_default_context(cafile=settings.ca_bundle or None)
            # httpcore looks at every pooled connection on each request (a readability check per idle
            # socket), so a big pool costs CPU on every call under load: 64 -> 16 took benchmark 4's server
            # CPU per agent execution from ~9.0 to ~7.8 ms (8: ~6.8 ms).
            pool = httpx.Limits(max_connections=settings.service_connections,
                                max_keepalive_connections=settings.service_connections)  # fmt: skip
            tasks_client = TaskServiceClient(cfg["task_url"], cfg["task_key"],
                                             http=httpx.AsyncClient(timeout=30, verify=verify, limits=pool))  # fmt: skip
            stack.push_async_callback(tasks_client.aclose)
            brain_client = BrainClient(cfg["brain_url"] or "ws://127.0.0.1:9", api_key=cfg["brain_key"],
                                       dialect=settings.brain_dialect,
                                       ssl_context=verify)  # fmt: skip
            stack.push_async_callback(brain_client.aclose)
            am_client = (
                AutoMovieClient(cfg["am_url"], api_token=cfg["am_token"], payload_email=cfg["am_email"],
                                payload_password=cfg["am_password"], http=httpx.AsyncClient(timeout=30, verify=verify, limits=pool))
                if cfg["am_url"] else None
            )  # fmt: skip
            if am_client is not None:
                stack.push_async_callback(am_client.aclose)
            writer: WriterPort = (
                LLMWriter(settings.llm_url, settings.llm_api_key.get_secret_value(), settings.llm_model,
                          http=httpx.AsyncClient(timeout=120, verify=verify))
                if settings.llm_url else LocalWriter()
            )  # fmt: skip

            ttl = int(settings.checkpoint_ttl_days * 86400) if settings.checkpoint_ttl_days else None
            integrity_keys = await _integrity_keys(settings, redis, embedded=embedded is not None)
            signer = Signer(integrity_keys, deployment=prefix)
            # One pipeliner: a step's checkpoint and its status update share round trips.
            pipeliner = ScriptPipeliner(redis)
            saver = RedisCheckpointSaver(redis, prefix=f"{prefix}:cp", ttl_seconds=ttl, pipeliner=pipeliner,
                                         serde=SizeCappedSerializer(JsonPlusSerializer(), settings.state_max_bytes), signer=signer)  # fmt: skip
            store = WorkflowStore(redis, prefix=prefix, retention_seconds=settings.retention_days * 86400,
                                  signer=signer, pipeliner=pipeliner)  # fmt: skip
            webhook_base = {"url": settings.webhook_base_url}
            budgets = BudgetBook(store, settings, pipeliner)
            pending_events: set[asyncio.Task[Any]] = set()

            def make_ports(rec: WorkflowRecord) -> Ports:
                async def on_wait(reason: str) -> None:
                    await store.update(rec.id, {"waiting_reason": reason, "message": reason},
                                       event="service.waiting", event_data={"reason": reason})  # fmt: skip

                def on_agent(agent: str, outcome: str, detail: str) -> None:
                    metrics.agent_executions.labels(agent, outcome).inc()
                    if outcome != "ok" or detail:
                        t = asyncio.get_running_loop().create_task(
                            store.update(
                                rec.id,
                                {},
                                event=f"agent.{outcome}",
                                event_data={"agent": agent, "detail": detail},
                            )
                        )
                        pending_events.add(t)
                        t.add_done_callback(pending_events.discard)

                def unavailable(service: str) -> bool:
                    g = guards.get(service)
                    return g is not None and g.state == "open"

                budget = budgets.for_workflow(rec.id, rec.workflow, rec.options)
                return Ports(
                    workflow_id=rec.id,
                    project_id=rec.project_id,
                    tasks=WorkflowTasks(store, tasks_client, guards["task-service"], workflow_id=rec.id,
                                        project_id=rec.project_id, correlation_id=rec.correlation_id,
                                        webhook_base=webhook_base["url"], webhook_secret=secret,
                                        poll_max=settings.task_poll_seconds, on_wait=on_wait, budget=budget),
                    brain=GuardedBrain(brain_client, guards["brain"], on_wait),
                    auto_movie=GuardedAutoMovie(am_client, guards["auto-movie"], rec.correlation_id),
                    writer=writer,
                    memo=RedisMemo(store, rec.id),
                    files=MediaFiles(media_dir / "deliverables", rec.project_id, rec.id),
                    unavailable=unavailable,
                    on_agent=on_agent,
                    budget=budget,
                )  # fmt: skip

            async def publish_control(wid: str, what: str) -> None:
                await redis.publish(f"{prefix}:control:{wid}", what)

            async def cancel_jobs(wid: str) -> None:
                for key, task_id in (await store.jobs(wid)).items():
                    try:
                        await tasks_client.cancel(task_id)
                        log.info("jobs.cancelled", workflow_id=wid, step=key, task_id=task_id)
                    except Exception:
                        log.warning("jobs.cancel_failed", workflow_id=wid, task_id=task_id)

            keys = KeyStore(redis, prefix, max_age_days=settings.api_key_max_age_days,
                            warn_days=settings.api_key_warn_days, fail_limit=settings.auth_failures_per_minute)  # fmt: skip
            caller = default_caller or Caller()

            async def may_see(wid: str) -> bool:
                rec = await store.get(wid)
                who = current_caller.get() or caller
                return rec is not None and who.sees(rec.project_id)

            notifier = RedisNotifier(redis, prefix, may_see)
            await notifier.start()
            stack.push_async_callback(notifier.stop)
            service = OrchestratorService(store, brief_max_chars=settings.brief_max_chars, budgets=budgets.deployment,
                                          publish_control=publish_control, cancel_jobs=cancel_jobs,
                                          saver=saver, health=board.states, audit=keys.audit,
                                          read_audit=keys.read_audit, watch=notifier.watch)  # fmt: skip
            orch = cls(
                settings=settings, redis=redis, store=store, saver=saver, service=service,
                mcp=build_mcp_server(service, default_caller=caller, notifier=notifier, integrity_keys=integrity_keys), engine=None, board=board, guards=guards, metrics=metrics,
                webhook_secret=secret, consumer=consumer, embedded=embedded, sandbox_urls=urls, sandbox=sandbox,
                media_dir=media_dir, keys=keys, notifier=notifier, integrity_keys=integrity_keys, budgets=budgets,
            )  # fmt: skip

            if http is not None or with_sandbox:
                from server._http import build_http_app

                app = build_http_app(orch, keys=keys if auth else None)
                host, port = http if http is not None else ("127.0.0.1", 0)
                # Open requests (status long-polls, board streams) get a share of the shutdown grace, then are closed.
                orch.http_url = await stack.enter_async_context(
                    serve_app(app, host, port, lifespan="on",
                              timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds * 0.2)),
                              **(tls or {}))
                )  # fmt: skip
                if not webhook_base["url"]:
                    webhook_base["url"] = orch.http_url
                log.info("http.listening", url=orch.http_url)

            if with_engine:
                # Job webhooks arrive at any instance; the runs waiting here hear of them through this.
                await store.job_notices.start()
                stack.push_async_callback(store.job_notices.stop)
                engine = Engine(store, saver, make_ports, consumer=consumer, concurrency=settings.worker_concurrency,
                                lease_seconds=settings.lease_seconds, metrics=metrics, audit=keys.audit,
                                max_attempts=settings.run_max_attempts, cpu_turns=settings.worker_cpu_turns,
                                memory=MemoryMark(settings.memory_high_water_bytes))  # fmt: skip
                await engine.start()
                # Half the shutdown grace drains the runs; what has not reached a step boundary by then is
                # cancelled and handed back, and the rest of the grace closes connections.
                stack.push_async_callback(engine.stop, settings.shutdown_grace_seconds * 0.5)
                listener = asyncio.create_task(_control_listener(redis, prefix, engine))
                stack.callback(listener.cancel)
                orch.engine = engine
            yield orch


async def _integrity_keys(settings: Settings, redis: AnyRedis, embedded: bool) -> list[bytes]:
    """The HMAC keys: from configuration; else, for the private embedded Redis, a key file in the data folder
    (mode 0600); else one key shared through Redis, with a warning (it then detects corruption, not tampering).
    """
    if settings.integrity_keys is not None:
        return [
            k.strip().encode() for k in settings.integrity_keys.get_secret_value().split(",") if k.strip()
        ]
    if embedded:
        path = settings.data_dir / "integrity.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return [path.read_text().strip().encode()]
    log.warning("integrity.key_in_redis", hint="set INTEGRITY_KEYS: a key kept in Redis cannot stop someone who can "
                "write to Redis, it only detects corruption")  # fmt: skip
    r: Any = redis
    await r.set(f"{settings.key_prefix}:integrity-key", secrets.token_hex(32), nx=True)
    stored = await r.get(f"{settings.key_prefix}:integrity-key")
    return [stored if isinstance(stored, bytes) else str(stored).encode()]


async def _control_listener(redis: AnyRedis, prefix: str, engine: Engine) -> None:
    """Apply pause/cancel published by any instance to the runs this instance holds."""

    def on_message(channel: str, what: str) -> None:
        engine.control(channel.rsplit(":", 1)[1], what)

    await follow(redis, on_message, patterns=[f"{prefix}:control:*"], name="control")
