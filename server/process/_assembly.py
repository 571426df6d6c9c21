"""Assembling one orchestrator process: Redis, stores, checkpointer, outside services, MCP, HTTP, engine.

Each part is built from the settings here and given exactly what it uses; nothing below this layer holds
the `Orchestrator`. The stand-ins are not part of it: `serve --sandbox`, the demo and the tests start a
`server.sandbox.Sandbox` and point the settings at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from mcp.server.mcpserver import MCPServer

from adapters import (
    AnyRedis,
    AutoMovieClient,
    BrainClient,
    EmbeddedRedis,
    KeyStore,
    Limits,
    LLMWriter,
    QuotaStore,
    RedisCheckpointSaver,
    RetryPolicy,
    ScriptPipeliner,
    SecurityAudit,
    ServiceGuard,
    SharedBreakers,
    Signer,
    TaskServiceClient,
    WorkflowStore,
    open_redis,
    tracing,
)
from graphs import BudgetLimits, LocalWriter, WriterPort
from server.core import (
    Caller,
    Checkpoints,
    Deliverables,
    OrchestratorService,
    QuotaPolicy,
    current_caller,
    sweep_quotas,
)
from server.engine import (
    BudgetCounters,
    Engine,
    Healing,
    MemoryMark,
    RunPorts,
    ServiceClients,
    SizeCappedSerializer,
    TaskLists,
    cancel_jobs,
)
from server.mcp import ElicitationAnswers, RedisNotifier, build_mcp_server
from server.process._workers import EngineProcesses
from server.settings import Settings
from server.telemetry import Metrics
from server.web import Board, Health, WebhookReceiver, build_http_app, serve_app

__all__ = ["Orchestrator"]

log = structlog.get_logger(__name__)

SERVICES = ("task-service", "brain", "auto-movie", "llm")
_KEEPALIVE_EXPIRY = 4.0  # seconds: below the outside services' 5 s keep-alive


@dataclass
class Orchestrator:
    """The handle of one running process: what the CLI, the demo and the tests hold on to.

    Attributes:
        settings: the process's settings.
        redis: the Redis client every part shares (tests read and tamper with keys through it).
        store, saver: the workflow store and the checkpointer.
        service: the operations behind every transport.
        mcp: the MCP server (stdio runs it directly; the HTTP port serves it).
        keys, audit: API keys and the security audit.
        notifier: cross-instance change notices.
        breakers: the outside services' shared circuit states.
        metrics: the process's Prometheus registry.
        budgets: the workflows' budget counters.
        engine: the engine of this process (None when it serves MCP only).
        consumer: this instance's name in the run queue and in leases.
        webhook_secret: the deployment's webhook key.
        integrity_keys: the deployment's HMAC keys (newest first).
        redis_url: the Redis this process uses (the embedded one's, when it started one).
        http_url: the HTTP port's base URL ("" without one).
        engine_processes: the engine child processes (``--engine-processes``).
        default_caller: who calls when the transport authenticated nobody.
    """

    settings: Settings
    redis: AnyRedis
    store: WorkflowStore
    saver: RedisCheckpointSaver
    service: OrchestratorService
    mcp: MCPServer
    keys: KeyStore
    audit: SecurityAudit
    notifier: RedisNotifier
    breakers: SharedBreakers
    metrics: Metrics
    budgets: BudgetCounters
    engine: Engine | None
    consumer: str
    webhook_secret: bytes = field(repr=False)
    integrity_keys: list[bytes] = field(repr=False)
    redis_url: str = field(repr=False)
    http_url: str = ""
    engine_processes: EngineProcesses | None = None
    default_caller: Caller = field(default_factory=Caller)

    @property
    def media_root(self) -> Any:
        """The media folder (deliverables, the stand-ins' files)."""
        return self.settings.media_root

    async def stop_engine(self, drain_seconds: float) -> None:
        """Stop this process's engine now: runs get `drain_seconds` to reach a step boundary, then are
        cancelled; every run it held is handed back to the queue (the next instance takes it at once).

        Leaving the `open` block stops it too, with half the shutdown grace to drain; this is for a
        process whose client has gone and which should let go of its work without that wait.
        """
        if self.engine is not None:
            await self.engine.stop(drain_seconds)

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
        tls = {"ssl_ca_certs": self.settings.redis_ca_file} if self.settings.redis_ca_file else {}
        consumer, prefix, url = self.consumer, self.settings.key_prefix, self.redis_url

        async def hand_back() -> None:
            client = await open_redis(url, **tls)
            try:
                store = WorkflowStore(client, prefix=prefix)
                for t in tickets:
                    await store.hand_back(t, consumer)
            finally:
                await client.aclose()

        asyncio.run(asyncio.wait_for(hand_back(), timeout))
        log.warning("engine.runs_handed_back_on_exit", count=len(tickets),
                    workflows=[t.workflow_id for t in tickets])  # fmt: skip
        return len(tickets)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        with_engine: bool = True,
        engine_processes: int = 0,
        http: tuple[str, int] | None = None,
        auth: bool = True,
        default_caller: Caller | None = None,
        tls: dict[str, str] | None = None,
    ) -> AsyncIterator[Orchestrator]:
        """Start everything; stop it all, in reverse, when the block exits.

        Args:
            settings: the process's settings (pointed at the stand-ins by `Sandbox.settings` to try it out).
            with_engine: run workflows in this process (else serve MCP only).
            engine_processes: run workflows in this many child processes instead (needs `http`).
            http: (host, port) to serve the HTTP port on (MCP, webhooks, health, the board).
            auth: require API keys on the HTTP port's MCP endpoints (False only for loopback development).
            default_caller: the caller of unauthenticated transports (stdio).
            tls: ``ssl_certfile``/``ssl_keyfile`` for the HTTP port.
        """
        async with contextlib.AsyncExitStack() as stack:
            orch, clients = await _assemble(stack, settings, default_caller=default_caller or Caller())
            if http is not None:
                orch.http_url = await _serve_http(
                    stack, orch, http, auth=auth, tls=tls, processes=engine_processes
                )
            if orch.engine_processes is not None:
                await orch.engine_processes.start(orch.child_environment())
                stack.push_async_callback(orch.engine_processes.stop)
            elif with_engine:
                await _start_engine(stack, orch, clients)
            yield orch

    def child_environment(self) -> dict[str, str]:
        """What an engine child needs to be an engine of this instance: its Redis, prefix, keys and services.

        A child's shutdown grace is a part of the parent's, so it has handed its runs back and exited before
        the parent's own grace ends. Without an explicit memory mark, the default one (a share of the memory
        limit) is divided between the children: they share one machine.
        """
        s = self.settings
        count = self.engine_processes.count if self.engine_processes is not None else 1
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "KEY_PREFIX": s.key_prefix,
            # The same HMAC keys: a child signing with another key would fail every read of the parent's.
            "INTEGRITY_KEYS": ",".join(k.decode() for k in self.integrity_keys),
            "WEBHOOK_BASE_URL": s.webhook_base_url or self.http_url,
            # Deliverables land where the parent (and its board) looks for them.
            "MEDIA_DIR": str(s.media_root),
            "SHUTDOWN_GRACE_SECONDS": str(s.shutdown_grace_seconds * 0.6),
            "MEMORY_HIGH_WATER_MB": str(_child_memory_mb(s, count)),
            "TASK_SERVICE_URL": s.task_service_url, "TASK_SERVICE_API_KEY": s.task_service_api_key.get_secret_value(),
            "BRAIN_URL": s.brain_url, "BRAIN_API_KEY": s.brain_api_key.get_secret_value(),
            "AUTO_MOVIE_URL": s.auto_movie_url, "AUTO_MOVIE_TOKEN": s.auto_movie_token.get_secret_value(),
            "PAYLOAD_EMAIL": s.payload_email, "PAYLOAD_PASSWORD": s.payload_password.get_secret_value(),
        }  # fmt: skip
        for name in ("REDIS_URL_FILE", "INTEGRITY_KEYS_FILE"):
            env.pop(name, None)
        return env


def _child_memory_mb(settings: Settings, count: int) -> int:
    """Each engine child's memory mark: the one set, or the default mark shared out between the children."""
    return settings.memory_high_water_mb or max(1, settings.memory_high_water_bytes // max(1, count) // 2**20)


async def _assemble(
    stack: contextlib.AsyncExitStack, settings: Settings, *, default_caller: Caller
) -> tuple[Orchestrator, ServiceClients]:
    """Redis, the stores, the outside services and the MCP server (no port served, no engine yet)."""
    redis, url, embedded = await _open_redis(stack, settings)
    prefix = settings.key_prefix
    integrity_keys = await _integrity_keys(settings, redis, embedded=embedded)
    signer = Signer(integrity_keys, deployment=prefix)
    # One pipeliner: a step's checkpoint and its status update share round trips.
    pipeliner = ScriptPipeliner(redis)
    ttl = int(settings.checkpoint_ttl_days * 86400) if settings.checkpoint_ttl_days else None
    saver = RedisCheckpointSaver(redis, prefix=f"{prefix}:cp", ttl_seconds=ttl, pipeliner=pipeliner,
                                 serde=SizeCappedSerializer(JsonPlusSerializer(), settings.state_max_bytes), signer=signer)  # fmt: skip
    quotas = QuotaStore(redis, prefix, pipeliner=pipeliner)
    store = WorkflowStore(redis, prefix=prefix, retention_seconds=settings.retention_days * 86400,
                          signer=signer, pipeliner=pipeliner, quotas=quotas)  # fmt: skip
    secret = (settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret is not None
              else await store.deployment_secret("webhook-secret"))  # one per deployment, shared through Redis  # fmt: skip
    audit = SecurityAudit(redis, prefix)
    keys = KeyStore(redis, prefix, max_age_days=settings.api_key_max_age_days, warn_days=settings.api_key_warn_days,
                    fail_limit=settings.auth_failures_per_minute, audit=audit)  # fmt: skip
    consumer = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    breakers = SharedBreakers(redis, prefix=prefix, instance=consumer)
    await breakers.start()
    stack.push_async_callback(breakers.stop)
    tasks_client = await _task_service_client(stack, settings)
    notifier = await _notifier(stack, redis, store, prefix, default_caller)
    metrics = Metrics()
    service = OrchestratorService(
        store, checkpoints=Checkpoints(saver), audit=audit, watch=notifier.watch,
        brief_max_chars=settings.brief_max_chars, budgets=_deployment_budgets(settings),
        cancel_jobs=lambda wid: cancel_jobs(store, tasks_client, wid), health=breakers.states,
        notice_backstop_seconds=settings.notice_backstop_seconds, quotas=quotas, quota_policy=_quota_policy(settings),
        metrics=metrics,
    )  # fmt: skip
    _background(stack, sweep_quotas(quotas, store, consumer, settings.quota_sweep_seconds))
    mcp = build_mcp_server(
        service, store, notifier, default_caller=default_caller, integrity_keys=integrity_keys
    )
    orch = Orchestrator(
        settings=settings, redis=redis, store=store, saver=saver, service=service, mcp=mcp, keys=keys, audit=audit,
        notifier=notifier, breakers=breakers, metrics=metrics, budgets=BudgetCounters(store, service.budgets),
        engine=None, consumer=consumer, webhook_secret=secret, integrity_keys=integrity_keys, redis_url=url,
        default_caller=default_caller,
    )  # fmt: skip
    return orch, await _service_clients(stack, settings, breakers, tasks_client)


async def _open_redis(stack: contextlib.AsyncExitStack, settings: Settings) -> tuple[AnyRedis, str, bool]:
    """The Redis of the settings, or a private embedded one (started here); (client, URL, embedded)."""
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        embedded = False
    else:
        server = EmbeddedRedis(data_dir=settings.data_dir)
        await asyncio.to_thread(server.start)
        stack.callback(server.stop)
        url, embedded = server.url, True
    tls = {"ssl_ca_certs": settings.redis_ca_file} if settings.redis_ca_file else {}
    redis = await open_redis(url, **tls)
    stack.push_async_callback(redis.aclose)
    return redis, url, embedded


async def _notifier(
    stack: contextlib.AsyncExitStack, redis: AnyRedis, store: WorkflowStore, prefix: str, fallback: Caller
) -> RedisNotifier:
    async def may_see(wid: str) -> bool:
        rec = await store.get(wid)
        return rec is not None and (current_caller.get() or fallback).sees(rec.project_id)

    notifier = RedisNotifier(redis, prefix, may_see)
    await notifier.start()
    stack.push_async_callback(notifier.stop)
    return notifier


def _quota_policy(settings: Settings) -> QuotaPolicy:
    return QuotaPolicy(
        project=Limits(settings.quota_project_max_in_flight, settings.quota_project_starts_per_minute, "settings"),
        key=Limits(settings.quota_key_max_in_flight, settings.quota_key_starts_per_minute, "settings"),
    )  # fmt: skip


def _background(stack: contextlib.AsyncExitStack, coro: Coroutine[Any, Any, None]) -> None:
    """A task of the process's, cancelled (and awaited) when the process closes."""
    task = asyncio.create_task(coro)

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(cancel)


def _deployment_budgets(settings: Settings) -> BudgetLimits:
    return BudgetLimits(
        agent_executions=settings.budget_agent_executions,
        outside_jobs=settings.budget_outside_jobs,
        fan_out=settings.budget_fan_out,
        step_seconds=settings.budget_step_seconds,
    )


def _tls_context(settings: Settings) -> ssl.SSLContext:
    # TLS to outside services is verified: system CAs, or CA_BUNDLE. There is no switch to turn it off.
    return ssl.create_default_context(cafile=settings.ca_bundle or None)


def _pool(settings: Settings) -> httpx.Limits:
    # httpcore looks at every pooled connection on each request (a readability check per idle socket), so a
    # big pool costs CPU on every call under load: 64 -> 16 took benchmark 4's server CPU per agent execution
    # from ~9.0 to ~7.8 ms (8: ~6.8 ms).
    n = settings.service_connections
    # The Task Service's uvicorn closes an idle connection 5 s after its last answer; a pooled one reused at
    # that instant fails ("Server disconnected"). Ours expire first.
    return httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=_KEEPALIVE_EXPIRY)


def _http(
    service: str, timeout: float, verify: ssl.SSLContext, limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    """The HTTP client of an outside service: a CLIENT span per request, with traceparent, when tracing is on."""
    inner = httpx.AsyncHTTPTransport(
        verify=verify, limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    )  # httpx's own defaults
    return httpx.AsyncClient(timeout=timeout, transport=tracing.TracingTransport(inner, service))


async def _task_service_client(stack: contextlib.AsyncExitStack, settings: Settings) -> TaskServiceClient:
    http = _http("task-service", 30, _tls_context(settings), _pool(settings))
    client = TaskServiceClient(
        settings.task_service_url, settings.task_service_api_key.get_secret_value(), http=http
    )
    stack.push_async_callback(client.aclose)
    return client


async def _service_clients(
    stack: contextlib.AsyncExitStack, settings: Settings, breakers: SharedBreakers, tasks: TaskServiceClient
) -> ServiceClients:
    """The outside services' clients, each behind a guard (breaker shared through Redis, retries, timeout)."""
    verify = _tls_context(settings)
    # The Task Service's breaker asks its health route while open: back, the next call is the trial at once.
    guards = {
        name: ServiceGuard(name, breakers, retry=RetryPolicy(max_attempts=4, base=0.2, cap=5.0),
                           timeout=300.0 if name == "llm" else 30.0, concurrency=256,
                           fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds,
                           probe=tasks.healthy if name == "task-service" else None,
                           probe_seconds=settings.breaker_probe_seconds)
        for name in SERVICES
    }  # fmt: skip
    brain = BrainClient(settings.brain_url or "ws://127.0.0.1:9", api_key=settings.brain_api_key.get_secret_value(),
                        dialect=settings.brain_dialect, ssl_context=verify)  # fmt: skip
    stack.push_async_callback(brain.aclose)
    auto_movie = None
    if settings.auto_movie_url:
        auto_movie = AutoMovieClient(
            settings.auto_movie_url, api_token=settings.auto_movie_token.get_secret_value(),
            payload_email=settings.payload_email, payload_password=settings.payload_password.get_secret_value(),
            http=_http("auto-movie", 30, verify, _pool(settings)),
        )  # fmt: skip
        stack.push_async_callback(auto_movie.aclose)
    writer: WriterPort = (
        LLMWriter(settings.llm_url, settings.llm_api_key.get_secret_value(), settings.llm_model,
                  http=_http("llm", 120, verify))
        if settings.llm_url else LocalWriter()
    )  # fmt: skip
    return ServiceClients(tasks=tasks, brain=brain, auto_movie=auto_movie, writer=writer, guards=guards)


async def _serve_http(
    stack: contextlib.AsyncExitStack,
    orch: Orchestrator,
    bind: tuple[str, int],
    *,
    auth: bool,
    tls: dict[str, str] | None,
    processes: int,
) -> str:
    """Serve the HTTP port; returns its base URL."""
    s = orch.settings
    processes_view = None
    if processes:
        children = EngineProcesses(processes, orch.consumer, grace_seconds=s.shutdown_grace_seconds * 0.7)
        orch.engine_processes = children
        mark = _child_memory_mb(s, processes) * 2**20

        def processes_view() -> list[dict[str, object]]:
            return children.memory(mark)

    health = Health(
        orch.store, orch.breakers, orch.metrics, orch.keys, quotas=orch.service.quotas,
        engine=lambda: orch.engine.health() if orch.engine is not None else None,
        engines=processes_view,
        resident_bytes=lambda: orch.engine.memory.rss if orch.engine is not None and orch.engine.memory else None,
    )  # fmt: skip
    app = build_http_app(
        orch.mcp, keys=orch.keys if auth else None, health=health,
        webhooks=WebhookReceiver(orch.store, orch.webhook_secret, orch.metrics, orch.audit),
        board=Board(orch.service, orch.notifier, Deliverables(s.media_root)).routes(),
        trusted_proxies=s.trusted_proxy_list, notifier=orch.notifier,
        answers=ElicitationAnswers(orch.service, orch.default_caller),
    )  # fmt: skip
    host, port = bind
    # Open requests (status long-polls, board streams) get a share of the shutdown grace, then are closed.
    url = await stack.enter_async_context(
        serve_app(app, host, port, lifespan="on",
                  timeout_graceful_shutdown=max(1, int(s.shutdown_grace_seconds * 0.2)), **(tls or {}))
    )  # fmt: skip
    log.info("http.listening", url=url)
    return url


async def _start_engine(
    stack: contextlib.AsyncExitStack, orch: Orchestrator, clients: ServiceClients
) -> None:
    """Run workflows in this process: job notices, the ports of each run, the engine."""
    s, store = orch.settings, orch.store
    # Job webhooks arrive at any instance; the runs waiting here hear of them through this.
    await store.job_notices.start()
    stack.push_async_callback(store.job_notices.stop)
    lists = TaskLists(clients.tasks, clients.guards["task-service"])
    healing = Healing(store, lists, orch.metrics, confirm_seconds=s.task_lost_confirm_seconds,
                      listings_needed=s.task_lost_listings)  # fmt: skip
    ports = RunPorts(
        store, clients, budgets=orch.budgets, deliverables=Deliverables(s.media_root),
        metrics=orch.metrics, webhook_base=s.webhook_base_url or orch.http_url, webhook_secret=orch.webhook_secret,
        poll_seconds=s.task_poll_seconds, healing=healing, unknown_grace=s.task_unknown_grace_seconds,
        webhook_grace=s.task_webhook_grace_seconds, job_max_seconds=s.task_job_max_seconds,
    )  # fmt: skip
    engine = Engine(store, orch.saver, ports, consumer=orch.consumer, concurrency=s.worker_concurrency,
                    lease_seconds=s.lease_seconds, metrics=orch.metrics, audit=orch.audit,
                    max_attempts=s.run_max_attempts, cpu_turns=s.worker_cpu_turns,
                    cpu_turns_min=s.worker_cpu_turns_min, loop_lag_target=s.worker_loop_lag_target_ms / 1000,
                    memory=MemoryMark(s.memory_high_water_bytes))  # fmt: skip
    await engine.start()
    # Half the shutdown grace drains the runs; what has not reached a step boundary by then is cancelled and
    # handed back, and the rest of the grace closes connections.
    stack.push_async_callback(engine.stop, s.shutdown_grace_seconds * 0.5)
    orch.engine = engine


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
    return [await WorkflowStore(redis, prefix=settings.key_prefix).deployment_secret("integrity-key")]
