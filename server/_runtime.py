"""Assembling one orchestrator process: Redis, checkpointer, store, engine, adapters, MCP server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from mcp.server.mcpserver import MCPServer

from adapters import (
    AnyRedis,
    EmbeddedRedis,
    RedisCheckpointSaver,
    TaskServiceClient,
    WorkflowRecord,
    WorkflowStore,
    open_redis,
)
from graphs import Ports
from server._engine import Engine
from server._jobs import WorkflowTasks
from server._mcp import build_mcp_server
from server._service import OrchestratorService
from server.sandbox import TaskServiceStandIn, serve_app
from server.settings import Settings

__all__ = ["Orchestrator"]

log = structlog.get_logger(__name__)


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
    tasks_client: TaskServiceClient
    embedded: EmbeddedRedis | None = None
    sandbox_urls: dict[str, str] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, *, with_sandbox: bool = False, with_engine: bool = True
    ) -> AsyncIterator[Orchestrator]:
        """Start everything; stop it all, in reverse, when the block exits."""
        async with contextlib.AsyncExitStack() as stack:
            embedded: EmbeddedRedis | None = None
            if settings.redis_url is not None:
                url = settings.redis_url.get_secret_value()
            else:
                embedded = EmbeddedRedis(data_dir=settings.data_dir)
                await asyncio.to_thread(embedded.start)
                stack.callback(embedded.stop)
                url = embedded.url
            redis = await open_redis(url)
            stack.push_async_callback(redis.aclose)

            sandbox: dict[str, Any] = {}
            urls: dict[str, str] = {}
            task_url, task_key = settings.task_service_url, settings.task_service_api_key.get_secret_value()
            if with_sandbox:
                media = settings.data_dir.parent / "sandbox-media"
                ts = TaskServiceStandIn(media_dir=media)
                task_url = await stack.enter_async_context(serve_app(ts.app()))
                ts.public_url = task_url
                task_key = ts.api_key
                sandbox["task_service"] = ts
                urls["task_service"] = task_url
                log.info("sandbox.started", task_service=task_url, media=str(media))
            tasks_client = TaskServiceClient(task_url, task_key)
            stack.push_async_callback(tasks_client.aclose)

            prefix = settings.key_prefix
            ttl = int(settings.checkpoint_ttl_days * 86400) if settings.checkpoint_ttl_days else None
            saver = RedisCheckpointSaver(redis, prefix=f"{prefix}:cp", ttl_seconds=ttl)
            store = WorkflowStore(redis, prefix=prefix, retention_seconds=settings.retention_days * 86400)

            def make_ports(rec: WorkflowRecord) -> Ports:
                return Ports(
                    workflow_id=rec.id,
                    project_id=rec.project_id,
                    tasks=WorkflowTasks(
                        store,
                        tasks_client,
                        workflow_id=rec.id,
                        project_id=rec.project_id,
                        correlation_id=rec.correlation_id,
                        poll_max=settings.task_poll_seconds,
                    ),
                )

            consumer = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
            engine: Engine | None = None
            if with_engine:
                engine = Engine(
                    store,
                    saver,
                    make_ports,
                    consumer=consumer,
                    concurrency=settings.worker_concurrency,
                    lease_seconds=settings.lease_seconds,
                )
                await engine.start()
                stack.push_async_callback(engine.stop)
                listener = asyncio.create_task(_control_listener(redis, prefix, engine))
                stack.callback(listener.cancel)

            async def publish_control(wid: str, what: str) -> None:
                await redis.publish(f"{prefix}:control:{wid}", what)

            service = OrchestratorService(
                store, brief_max_chars=settings.brief_max_chars, publish_control=publish_control
            )
            yield cls(
                settings=settings,
                redis=redis,
                store=store,
                saver=saver,
                service=service,
                mcp=build_mcp_server(service),
                engine=engine,
                tasks_client=tasks_client,
                embedded=embedded,
                sandbox_urls=urls,
                sandbox=sandbox,
            )


async def _control_listener(redis: AnyRedis, prefix: str, engine: Engine) -> None:
    """Apply pause/cancel published by any instance to the runs this instance holds."""
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.psubscribe(f"{prefix}:control:*")
            async for msg in pubsub.listen():
                if msg.get("type") != "pmessage":
                    continue
                channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                what = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                engine.control(channel.rsplit(":", 1)[1], what)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("engine.control_listener_failed")
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
