"""Engine processes: `serve --http --engine-processes N` runs workflows in N child processes.

One Python process runs on one core. The HTTP/MCP front and the engine compete for it under load, and
every status call waits behind graph steps. With engine processes the parent serves MCP only and each
child (`serve --engine-only`) is an engine-only instance on the same Redis: runs are shared out by the
run queue's consumer group exactly as between machines, and a child that dies is replaced while its
runs are reclaimed from their checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

import structlog

from adapters._embedded_redis import _die_with_parent

if TYPE_CHECKING:
    from server._runtime import Orchestrator

__all__ = ["EngineProcesses", "child_env"]

log = structlog.get_logger(__name__)

READY = "engine-only instance running"


def child_env(orch: Orchestrator) -> dict[str, str]:
    """What a child needs to be an engine of this instance: its Redis, prefix, keys and services."""
    s = orch.settings
    url = (
        orch.embedded.url
        if orch.embedded is not None
        else (s.redis_url.get_secret_value() if s.redis_url else "")
    )
    env = {
        **os.environ,
        "REDIS_URL": url,
        "KEY_PREFIX": s.key_prefix,
        # The same HMAC keys: a child signing with another key would fail every read of the parent's.
        "INTEGRITY_KEYS": ",".join(k.decode() for k in orch.integrity_keys),
        "WEBHOOK_BASE_URL": s.webhook_base_url or orch.http_url,
    }
    for name in ("REDIS_URL_FILE", "INTEGRITY_KEYS_FILE"):
        env.pop(name, None)
    if orch.sandbox:
        ts, brain, am = orch.sandbox["task_service"], orch.sandbox["brain"], orch.sandbox["auto_movie"]
        env |= {
            "TASK_SERVICE_URL": orch.sandbox_urls["task_service"], "TASK_SERVICE_API_KEY": ts.api_key,
            "BRAIN_URL": orch.sandbox_urls["brain"], "BRAIN_API_KEY": brain.api_key,
            "AUTO_MOVIE_URL": orch.sandbox_urls["auto_movie"], "AUTO_MOVIE_TOKEN": am.api_token,
            "PAYLOAD_EMAIL": am.email, "PAYLOAD_PASSWORD": am.password,
        }  # fmt: skip
    return env


class EngineProcesses:
    """Start, supervise (replace when one dies) and stop N engine-only children.

    Args:
        env: the children's environment (`child_env`).
        count: how many.
        name: this instance's name; child i is ``<name>-e<i>`` in the run queue's consumer group and in
            leases (each needs its own: a lease names the one process that runs a workflow).
        grace_seconds: how long a child may drain its runs after SIGTERM before it is killed.
    """

    def __init__(self, env: dict[str, str], count: int, name: str, grace_seconds: float = 15.0) -> None:
        self._env = env
        self._name = name
        self._count = count
        self._grace = grace_seconds
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    async def _spawn(self, i: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve", "--engine-only", env=self._env | {"INSTANCE_ID": f"{self._name}-e{i}"},
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        assert proc.stderr is not None
        while True:  # its log goes to LOG_FILE or its stderr; wait for the line that says it runs
            line = (await proc.stderr.readline()).decode(errors="replace")
            if not line:
                msg = f"engine process {i} exited at start (code {await proc.wait()})"
                raise RuntimeError(msg)
            if READY in line:
                break
            sys.stderr.write(line)
        self._procs[i] = proc
        log.info("engine_process.started", index=i, pid=proc.pid)
        return proc

    async def _supervise(self, i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            while line := await proc.stderr.readline():
                sys.stderr.write(line.decode(errors="replace"))
            code = await proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error("engine_process.died", index=i, pid=proc.pid, code=code)
            await asyncio.sleep(1.0)
            try:
                proc = await self._spawn(i)
            except (OSError, RuntimeError):
                log.exception("engine_process.restart_failed", index=i)
                await asyncio.sleep(5.0)

    async def start(self) -> None:
        """Start every child and wait until each runs."""
        procs = await asyncio.gather(*(self._spawn(i) for i in range(self._count)))
        self._tasks = [asyncio.create_task(self._supervise(i, p)) for i, p in enumerate(procs)]

    async def stop(self) -> None:
        """SIGTERM every child (they hand their runs back), then wait; kill those past the grace."""
        self._stopping = True
        live = [p for p in self._procs if p is not None and p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                await asyncio.wait_for(p.wait(), self._grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
