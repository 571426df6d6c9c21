"""Opening an orchestrator with the stand-ins of the outside services, for trying it out and for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from server.process._assembly import Orchestrator
from server.sandbox import Sandbox
from server.settings import Settings

__all__ = ["open_orchestrator"]


@contextlib.asynccontextmanager
async def open_orchestrator(
    settings: Settings, *, sandbox: bool = False, task_latency: float | None = None, **options: Any
) -> AsyncIterator[tuple[Orchestrator, Sandbox | None]]:
    """`Orchestrator.open`, with the stand-ins started first and the settings pointed at them when `sandbox`.

    With the stand-ins and no HTTP port asked for, the port is served on a loopback address anyway: the
    Task Service stand-in calls its webhooks there. `options` are `Orchestrator.open`'s.
    """
    async with contextlib.AsyncExitStack() as stack:
        standins: Sandbox | None = None
        if sandbox:
            standins = await stack.enter_async_context(
                Sandbox.running(settings.media_root, task_latency=task_latency,
                                webhook_delay=settings.sandbox_webhook_delay_seconds, defects=settings.sandbox_defects)
            )  # fmt: skip
            settings = standins.settings(settings)
            if options.get("http") is None:
                options["http"] = ("127.0.0.1", 0)
        orch = await stack.enter_async_context(Orchestrator.open(settings, **options))
        yield orch, standins
