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

import psutil
import structlog

from adapters import die_with_parent

__all__ = ["READY", "EngineProcesses"]

log = structlog.get_logger(__name__)

READY = "engine-only instance running"


class EngineProcesses:
    """Start, supervise (replace when one dies) and stop N engine-only children.

    Args:
        count: how many.
        name: this instance's name; child i is ``<name>-e<i>`` in the run queue's consumer group and in
            leases (each needs its own: a lease names the one process that runs a workflow).
        grace_seconds: how long a child may drain its runs after SIGTERM before it is killed.
    """

    def __init__(self, count: int, name: str, grace_seconds: float = 15.0) -> None:
        self._env: dict[str, str] = {}
        self._name = name
        self.count = count
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
            preexec_fn=die_with_parent,
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

    async def start(self, env: dict[str, str]) -> None:
        """Start every child with `env` (`Orchestrator.child_environment`) and wait until each runs."""
        self._env = env
        procs = await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        self._tasks = [asyncio.create_task(self._supervise(i, p)) for i, p in enumerate(procs)]

    def kill_now(self) -> None:
        """SIGKILL every child (a forced exit of the parent; callable from any thread)."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def memory(self, mark_bytes: int) -> list[dict[str, object]]:
        """Each child's resident memory against the mark (for the parent's /readyz)."""
        out: list[dict[str, object]] = []
        for i, p in enumerate(self._procs):
            if p is None or p.returncode is not None:
                continue
            try:
                rss = psutil.Process(p.pid).memory_info().rss
            except psutil.Error:
                continue
            out.append({"instance": f"{self._name}-e{i}", "pid": p.pid, "resident_mb": round(rss / 2**20, 1),
                        "high_water_mb": round(mark_bytes / 2**20, 1), "claiming": rss <= mark_bytes})  # fmt: skip
        return out

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
