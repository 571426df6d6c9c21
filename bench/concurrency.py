"""Benchmark 4: many default-size `movie_production` workflows in flight, against the stand-ins.

The outside services are the sandbox stand-ins in their own process (`movie-orchestrator sandbox`) with
2 s per Task Service job. The orchestrator is one `serve --http` process (or several on one Redis, for
benchmark 8). The driver starts every workflow over Streamable HTTP, follows each with
get_status(wait_seconds, until=...) and answers every decision with submit_decision (the recommended
option). It samples the servers' RSS and the engines' runs in flight (`/metrics`), reads Redis memory
(summed over a cluster's masters) before and after, and the CPU time of servers, stand-ins and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import psutil
from pydantic import SecretStr
from redis.asyncio import Redis

from bench.frontdoor import RawMcp
from server import Settings

__all__ = ["ConcurrencyResult", "run"]

WAIT_FOR = ["waiting_decision", "completed", "failed", "cancelled"]
# Default-size productions: no options (6 scenes, 3 characters, every phase, decision and service).
OPTIONS: dict[str, int] = {}


@dataclass
class ConcurrencyResult:
    """Figures of benchmark 4."""

    workflows: int = 0
    job_latency: float = 0.0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    decisions: int = 0
    seconds: float = 0.0
    start_seconds: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0
    peak_running: int = 0
    sample_errors: int = 0
    last_sample_error: str = ""
    peak_rss_mb: float = 0.0
    base_rss_mb: float = 0.0
    agent_executions: int = 0
    redis_bytes_per_workflow: float = 0.0
    redis_label: str = "Redis"
    instances: int = 1
    cpu_server: float = 0.0
    cpu_standins: float = 0.0
    cpu_redis: float = 0.0
    latencies: list[float] = field(default_factory=list)
    window: float | None = None
    open_runs: dict[str, RawMcp] = field(default_factory=dict)
    cut_off: int = 0

    def cpu_ms_per_execution(self) -> dict[str, float]:
        """CPU milliseconds per agent execution: servers, stand-ins, Redis."""
        n = self.agent_executions or 1
        return {"server": self.cpu_server * 1000 / n, "stand-ins": self.cpu_standins * 1000 / n,
                "redis": self.cpu_redis * 1000 / n}  # fmt: skip

    def ok(self) -> bool:
        """All in flight at once, within 500 MB RSS per instance, no errors."""
        return (self.peak_in_flight >= self.workflows and self.peak_rss_mb <= 500 * self.instances
                and not self.failed and not self.errors)  # fmt: skip

    def headline(self) -> str:
        """The target line for the report's head."""
        return (f"- Concurrency: {self.peak_in_flight} of {self.workflows} default-size productions in flight at "
                f"once, peak RSS {self.peak_rss_mb:.0f} MB, {self.completed} completed"
                + (f" and {self.cut_off} cancelled at the {self.window:g} s time box" if self.cut_off else "")
                + f", {self.failed} failed "
                f"(target all in flight, <= 500 MB, no errors: {'met' if self.ok() else 'NOT met'}).")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        minutes = self.seconds / 60 if self.seconds else float("nan")
        ok = self.ok()
        lines = [
            "### 4. Concurrency\n",
            f"{self.workflows} default-size `movie_production` workflows (6 scenes, 3 characters) on one "
            "`serve --http` process, "
            f"the stand-ins in their own process with {self.job_latency:g} s per Task Service job; every decision "
            "answered with submit_decision over Streamable HTTP; Redis durability.\n",
            "| workflows | peak in flight | peak runs executing | completed | failed | decisions answered "
            f"| completions/min | agent executions/min | wall time | peak RSS | {self.redis_label} memory per workflow |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.workflows} | {self.peak_in_flight} | {self.peak_running} | {self.completed} | {self.failed} | "
            f"{self.decisions} | "
            f"{self.completed / minutes:.0f} | {self.agent_executions / minutes:.0f} | {self.seconds:.0f} s | "
            f"{self.peak_rss_mb:.0f} MB | {self.redis_bytes_per_workflow / 1024:.0f} KiB |",
            "\nIn flight: started and not yet ended (a workflow waiting for its decision included); runs "
            "executing: the engine's `mo_runs_active`, sampled twice a second. Each workflow is its own project, "
            "created in Auto-Movie beforehand. CPU per agent execution: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in self.cpu_ms_per_execution().items())
            + ".",
            f"All started within {self.start_seconds:.1f} s. Target: all {self.workflows} in flight at once, "
            f"<= 500 MB RSS, no errors: {'met' if ok else 'NOT met'}.",
        ]
        if self.cut_off:
            lines.append(
                f"Time box: after {self.window:g} s the {self.cut_off} productions still running were cancelled "
                f"(completions/min and agent executions/min are over the time box; the wall time is the box)."
            )
        if self.errors:
            lines.append(f"Errors ({len(self.errors)}), first: {self.errors[0][:300]}")
        if self.sample_errors:
            lines.append(
                f"/metrics could not be read {self.sample_errors} times: {self.last_sample_error[:200]}"
            )
        return "\n".join(lines)


def one_process_server(data_dir: Path) -> list[str]:
    """The arguments of a `serve --http` process that runs its engine itself (whatever the cores)."""
    return [
        "serve",
        "--http",
        "127.0.0.1:0",
        "--no-auth",
        "--engine-processes",
        "0",
        "--data-dir",
        str(data_dir),
    ]


@contextlib.asynccontextmanager
async def _process(args: list[str], env: dict[str, str], marker: str) -> AsyncIterator[tuple[int, list[str]]]:
    """A subprocess of ours; yields its pid and its stderr/stdout lines up to the one containing `marker`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    while not any(marker in line for line in seen):
        line = (await proc.stdout.readline()).decode()
        if not line:
            msg = f"{args[0]} exited before it was ready: {' | '.join(seen[-5:])}"
            raise RuntimeError(msg)
        seen.append(line.strip())
    drain = asyncio.create_task(_discard(proc.stdout))
    try:
        yield proc.pid, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        drain.cancel()


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def sandbox_args(tmp: Path, latency: float) -> list[str]:
    """`movie-orchestrator sandbox` as the benchmarks run it: jobs of `latency` s, without the real services'
    defects (webhook with the status, video that works) — the workload of BENCHMARKS.md's history, and this
    service's cost rather than the stand-in's waits."""
    return ["sandbox", "--latency", str(latency), "--no-defects", "--data-dir", str(tmp / "sandbox" / "d")]


def in_process_settings(redis_url: str, tmp: Path, prefix: str) -> Settings:
    """A benchmark's orchestrator with the stand-ins in its own process: a key prefix of its own (`prefix` and a
    random tail), and the stand-ins without the real services' defects, as `sandbox_args` starts them."""
    return Settings(redis_url=SecretStr(redis_url), key_prefix=f"{prefix}{uuid.uuid4().hex[:6]}",
                    data_dir=tmp / "data", media_dir=tmp / "media", shutdown_grace_seconds=2.0,
                    sandbox_defects=False)  # fmt: skip


def _sandbox_env(lines: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in lines:
        for word in line.split():
            name, eq, value = word.partition("=")
            if eq and name.isupper():
                env[name] = value
    return env


async def _metric(http: httpx2.AsyncClient, url: str, name: str) -> float:
    text = (await http.get(url)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _projects(env: dict[str, str], n: int) -> list[str]:
    """Create `n` projects in Auto-Movie (the stand-in), as a producer would before production."""
    headers = {"Authorization": f"Bearer {env['AUTO_MOVIE_TOKEN']}"}
    async with httpx2.AsyncClient(base_url=env["AUTO_MOVIE_URL"], headers=headers, timeout=30) as http:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> str:
            async with sem:
                body = {"title": f"Bench {i}", "genre": "scifi", "episodeCount": 1}
                resp = await http.post("/api/v1/projects", json=body)
                resp.raise_for_status()
                return str(resp.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _follow(c: RawMcp, project_id: str, out: ConcurrencyResult, t0: float) -> None:
    """Start one production and see it through, answering its decisions."""
    t_own = time.perf_counter()
    try:
        started = await c.call_tool(
            "start_workflow",
            {
                "project_id": project_id,
                "workflow": "movie_production",
                "options": OPTIONS,
                "idempotency_key": f"bench-{project_id}",
            },
        )
        wid = started["workflow_id"]
        out.open_runs[wid] = c
        out.start_seconds = max(out.start_seconds, time.perf_counter() - t0)
        out.in_flight += 1
        out.peak_in_flight = max(out.peak_in_flight, out.in_flight)
        while True:
            st = await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 60, "until": WAIT_FOR})
            if st["status"] in {"completed", "failed", "cancelled"}:
                out.in_flight -= 1
                out.open_runs.pop(wid, None)
            if st["status"] == "completed":
                out.completed += 1
                out.latencies.append(time.perf_counter() - t_own)
                return
            if st["status"] in {"failed", "cancelled"}:
                out.failed += 1
                out.errors.append(f"{wid}: {st['status']}: {st.get('last_error', '')}")
                return
            for d in st.get("pending_decisions", []) if st["status"] == "waiting_decision" else []:
                choice = d.get("context", {}).get("recommended") or d["options"][0]
                await c.call_tool(
                    "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": choice}
                )
                out.decisions += 1
    except Exception as exc:
        out.errors.append(f"{type(exc).__name__}: {exc}")


def _cpu(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of processes and their children (those still alive)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            for q in [p, *p.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = q.cpu_times()
                    total += t.user + t.system
    return total


def _rss(servers: list[psutil.Process]) -> int:
    """Resident bytes of the servers and their children."""
    rss = 0
    for server in servers:
        with contextlib.suppress(psutil.Error):
            rss += sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    return rss


async def _sample(
    servers: list[psutil.Process], metrics_urls: list[str], out: ConcurrencyResult, stop: asyncio.Event
) -> None:
    """Peak RSS of the servers (and children) and peak runs executing in their engines, twice a second."""
    async with httpx2.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            out.peak_rss_mb = max(out.peak_rss_mb, _rss(servers) / 2**20)
            try:
                running = sum([int(await _metric(http, u, "mo_runs_active")) for u in metrics_urls])
            except httpx2.HTTPError as exc:
                out.sample_errors += 1
                out.last_sample_error = f"{type(exc).__name__}: {exc}"
            else:
                out.peak_running = max(out.peak_running, running)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def _redis_memory(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        return int((await redis.info("memory"))["used_memory"])
    finally:
        await redis.aclose()


class _RoundRobin:
    """Spread tool calls of one workflow over instances: each workflow sticks to one front door."""

    def __init__(self, clients: list[RawMcp]) -> None:
        self.clients = clients
        self.i = 0

    def next(self) -> RawMcp:
        self.i += 1
        return self.clients[self.i % len(self.clients)]


async def _servers(
    stack: contextlib.AsyncExitStack, env: dict[str, str], tmp: Path, instances: int
) -> tuple[list[int], list[str]]:
    """Start `instances` server processes on one Redis; their pids and MCP URLs."""
    pids, urls = [], []
    for i in range(instances):
        mine = {**env, "INSTANCE_ID": f"bench-{i}", "LOG_FILE": str(tmp / f"concurrency-server-{i}.log")}
        serve_args = one_process_server(tmp / f"c{i}")
        pid, lines = await stack.enter_async_context(_process(serve_args, mine, "listening on"))
        pids.append(pid)
        urls.append(next(ln for ln in lines if "listening on" in ln).split("listening on ")[1].split()[0])
    return pids, urls


async def _cut_off(unfinished: set[asyncio.Task[None]], out: ConcurrencyResult) -> None:
    """The time box ended: stop following the productions still running, and cancel them."""
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
    out.cut_off = len(out.open_runs)
    sem = asyncio.Semaphore(50)

    async def cancel(wid: str, c: RawMcp) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                await c.call_tool("cancel_workflow", {"workflow_id": wid})

    await asyncio.gather(*(cancel(w, c) for w, c in list(out.open_runs.items())))


async def run(
    redis_url: str,
    tmp: Path,
    *,
    workflows: int = 1000,
    job_latency: float = 2.0,
    instances: int = 1,
    memory: Callable[[], Awaitable[int]] | None = None,
    redis_pids: list[int] | None = None,
    redis_label: str = "Redis",
    window: float | None = None,
) -> ConcurrencyResult:
    """Run benchmark 4 on `redis_url` with `instances` server processes sharing it.

    With `window`, the productions still running after that many seconds are cancelled (a thousand
    default-size productions need more CPU than make bench's budget on a small machine).
    """
    out = ConcurrencyResult(workflows=workflows, job_latency=job_latency, instances=instances,
                            redis_label=redis_label, window=window)  # fmt: skip
    read_memory = memory or (lambda: _redis_memory(redis_url))
    redis_procs = [psutil.Process(p) for p in redis_pids or []]
    base_env = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    async with _process(sandbox_args(tmp, job_latency), base_env, "AUTO_MOVIE_URL=") as (
        sandbox_pid,
        sandbox_lines,
    ):
        services = _sandbox_env(sandbox_lines)
        projects = await _projects(services, workflows)
        prefix = f"c{uuid.uuid4().hex[:6]}"
        memory_before = await read_memory()
        async with contextlib.AsyncExitStack() as stack:
            env = {**base_env, **services, "REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                   "INTEGRITY_KEYS": f"bench-{prefix}-key"}  # fmt: skip
            pids, urls = await _servers(stack, env, tmp, instances)
            metrics_urls = [u.removesuffix("/mcp") + "/metrics" for u in urls]
            clients = [RawMcp(u, max_connections=workflows // instances + 50) for u in urls]
            for c in clients:
                await stack.enter_async_context(c.http)
            servers = [psutil.Process(p) for p in pids]
            out.base_rss_mb = _rss(servers) / 2**20
            standins = [psutil.Process(sandbox_pid)]
            cpu0 = (_cpu(servers), _cpu(standins), _cpu(redis_procs))
            stop = asyncio.Event()
            sampler = asyncio.create_task(_sample(servers, metrics_urls, out, stop))
            rr = _RoundRobin(clients)
            t0 = time.perf_counter()
            follows = [asyncio.create_task(_follow(rr.next(), p, out, t0)) for p in projects]
            _, unfinished = await asyncio.wait(follows, timeout=window)
            out.seconds = time.perf_counter() - t0
            # CPU and agent executions at the end of the box, before the cut-off: cancelling what still runs is
            # the benchmark's clean-up, not work of the productions (it was counted: at 1,000 in flight, 1,000
            # cancel calls against ~5 agent executions per production)
            cpu1 = (_cpu(servers), _cpu(standins), _cpu(redis_procs))
            out.cpu_server, out.cpu_standins, out.cpu_redis = (b - a for a, b in zip(cpu0, cpu1, strict=True))
            async with httpx2.AsyncClient(timeout=30) as http:
                out.agent_executions = sum(
                    [int(await _metric(http, u, "mo_agent_executions_total")) for u in metrics_urls]
                )
            if unfinished:  # the time box ended: stop following, cancel what still runs
                await _cut_off(unfinished, out)
            stop.set()
            await sampler
        memory_after = await read_memory()
        out.redis_bytes_per_workflow = (memory_after - memory_before) / workflows
    return out
