"""Notifications one waiting ``get_status`` gets, per transport and protocol generation.

    .venv/bin/python -m bench.notifications [--wait 60] [--scenes 4]

Two waits per transport, both with a progress token and log level ``info``:
- busy: a movie production (auto-approved) from its start, ``wait_seconds`` with ``until=['completed']``;
- quiet: a production parked on a decision, where nothing changes for the whole wait (the heartbeat).
Prints one table row per transport: progress and log notifications received, and the seconds waited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client

from server import Settings, open_orchestrator
from tests.server.clients import BOTH_ERAS, connect, stdio_client


class Count:
    """What one client heard."""

    def __init__(self) -> None:
        self.progress = 0
        self.logs = 0

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress += 1

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs += 1


async def _one(client_cm: Any, count: Count, wait: float, scenes: int, quiet: bool) -> tuple[int, int, float]:
    async with client_cm as c:
        options: dict[str, Any] = {"scenes": scenes, "characters": 2, "auto_approve": not quiet}
        start = await c.call_tool(
            "start_workflow", {"project_id": "bench", "brief": "a night train", "options": options}
        )
        wid = start.structured_content["workflow_id"]
        if quiet:
            while (
                await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 5})
            ).structured_content["status"] != "waiting_decision":
                pass
        t0 = time.monotonic()
        args = {"workflow_id": wid, "wait_seconds": wait, "until": ["completed", "failed"]}
        await c.call_tool(
            "get_status", args, progress_callback=count.on_progress, read_timeout_seconds=wait + 30
        )
        took = time.monotonic() - t0
        await c.call_tool("cancel_workflow", {"workflow_id": wid})
    return count.progress, count.logs, took


async def main() -> None:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", type=float, default=60.0)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--transports", default=",".join([*BOTH_ERAS, "stdio", "stdio-auto"]))
    args = parser.parse_args()
    # The stdio server is another process on the same Redis: both must sign records with the same key.
    os.environ.setdefault("INTEGRITY_KEYS", secrets.token_hex(32))
    with tempfile.TemporaryDirectory(prefix="mo-notif-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "redis", key_prefix="notif", task_poll_seconds=0.5,
                            sandbox_webhook_delay_seconds=0)  # fmt: skip
        async with open_orchestrator(settings, sandbox=True) as (orch, _):
            key, _ = await orch.keys.create("bench", ["*"], "admin")
            redis_url = orch.redis_url

            def client(transport: str, count: Count) -> contextlib.AbstractAsyncContextManager[Client]:
                kw: dict[str, Any] = {"logging_callback": count.on_log, "log_level": "info"}
                if transport.startswith("stdio"):
                    mode = "auto" if transport == "stdio-auto" else "legacy"
                    return stdio_client(redis_url, "notif", Path(tmp) / transport, mode=mode, **kw)
                return connect(orch, transport, key, **kw)

            transports = args.transports.split(",")
            print(
                f"| transport | busy wait: progress / logs / s | quiet wait ({args.wait:.0f} s): progress / logs |"
            )
            print("|---|---|---|")
            for transport in transports:
                busy, quiet = Count(), Count()
                try:
                    async with asyncio.timeout(args.wait * 2 + 60):
                        b = await _one(client(transport, busy), busy, args.wait, args.scenes, quiet=False)
                        q = await _one(client(transport, quiet), quiet, args.wait, args.scenes, quiet=True)
                except TimeoutError:
                    print(
                        f"| {transport} | stalled ({busy.progress} / {busy.logs}) | ({quiet.progress} / {quiet.logs}) |"
                    )
                    continue
                print(f"| {transport} | {b[0]} / {b[1]} / {b[2]:.0f} | {q[0]} / {q[1]} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
