"""Benchmark 4: many `movie_production` workflows in flight on one instance, against the stand-ins.

The outside services are the sandbox stand-ins in their own process (`movie-orchestrator sandbox`) with
2 s per Task Service job. The orchestrator is one `serve --http` process. The driver starts every
workflow over Streamable HTTP, follows each with get_status(wait_seconds, until=...) and answers every
decision with submit_decision (the recommended option). It samples the server's RSS and the engine's
runs in flight (`/metrics`), and reads Redis memory before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import psutil
from redis.asyncio import Redis

from bench.frontdoor import RawMcp

__all__ = ["ConcurrencyResult", "run"]

WAIT_FOR = ["waiting_decision", "completed", "failed", "cancelled"]
# A small production (one scene, one character: about 40 agent executions) so that a thousand finish
# within make bench's time budget on two cores; every phase, decision and outside service still runs.
OPTIONS = {"scenes": 1, "characters": 1}


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
    agent_executions: int = 0
    redis_bytes_per_workflow: float = 0.0

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        minutes = self.seconds / 60 if self.seconds else float("nan")
        all_in_flight = self.peak_in_flight >= self.workflows
        ok = all_in_flight and self.peak_rss_mb <= 500 and not self.failed and not self.errors
        lines = [
            "### 4. Concurrency\n",
            f"{self.workflows} `movie_production` workflows (options {OPTIONS}) on one `serve --http` process, "
            f"the stand-ins in their own process with {self.job_latency:g} s per Task Service job; every decision "
            "answered with submit_decision over Streamable HTTP; Redis durability.\n",
            "| workflows | peak in flight | peak runs executing | completed | failed | decisions answered "
            "| completions/min | agent executions/min | wall time | peak RSS | Redis memory per workflow |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.workflows} | {self.peak_in_flight} | {self.peak_running} | {self.completed} | {self.failed} | "
            f"{self.decisions} | "
            f"{self.completed / minutes:.0f} | {self.agent_executions / minutes:.0f} | {self.seconds:.0f} s | "
            f"{self.peak_rss_mb:.0f} MB | {self.redis_bytes_per_workflow / 1024:.0f} KiB |",
            "\nIn flight: started and not yet ended (a workflow waiting for its decision included); runs "
            "executing: the engine's `mo_runs_active`, sampled twice a second. Each workflow is its own project, "
            "created in Auto-Movie beforehand.",
            f"All started within {self.start_seconds:.1f} s. Target: all {self.workflows} in flight at once, "
            f"<= 500 MB RSS, no errors: {'met' if ok else 'NOT met'}.",
        ]
        if self.errors:
            lines.append(f"Errors ({len(self.errors)}), first: {self.errors[0][:300]}")
        if self.sample_errors:
            lines.append(
                f"/metrics could not be read {self.sample_errors} times: {self.last_sample_error[:200]}"
            )
        return "\n".join(lines)


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
        out.start_seconds = max(out.start_seconds, time.perf_counter() - t0)
        out.in_flight += 1
        out.peak_in_flight = max(out.peak_in_flight, out.in_flight)
        while True:
            st = await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 60, "until": WAIT_FOR})
            if st["status"] in {"completed", "failed", "cancelled"}:
                out.in_flight -= 1
            if st["status"] == "completed":
                out.completed += 1
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


async def _sample(
    server: psutil.Process, metrics_url: str, out: ConcurrencyResult, stop: asyncio.Event
) -> None:
    """Peak RSS of the server (and any children) and peak runs executing in its engine, twice a second."""
    async with httpx2.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            rss = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
            out.peak_rss_mb = max(out.peak_rss_mb, rss / 2**20)
            try:
                running = int(await _metric(http, metrics_url, "mo_runs_active"))
            except httpx2.HTTPError as exc:
                out.sample_errors += 1
                out.last_sample_error = f"{type(exc).__name__}: {exc}"
            else:
                out.peak_running = max(out.peak_running, running)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def run(
    redis_url: str, tmp: Path, *, workflows: int = 1000, job_latency: float = 2.0
) -> ConcurrencyResult:
    """Run benchmark 4 on `redis_url`."""
    out = ConcurrencyResult(workflows=workflows, job_latency=job_latency)
    base_env = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    sandbox_args = ["sandbox", "--latency", str(job_latency), "--data-dir", str(tmp / "sandbox" / "d")]
    async with _process(sandbox_args, base_env, "AUTO_MOVIE_URL=") as (_, sandbox_lines):
        services = _sandbox_env(sandbox_lines)
        projects = await _projects(services, workflows)
        env = {**base_env, **services, "REDIS_URL": redis_url,
               "KEY_PREFIX": f"c{uuid.uuid4().hex[:6]}", "LOG_FILE": str(tmp / "concurrency-server.log")}  # fmt: skip
        serve_args = ["serve", "--http", "127.0.0.1:0", "--no-auth", "--data-dir", str(tmp / "c")]
        redis = Redis.from_url(redis_url)
        memory_before = int((await redis.info("memory"))["used_memory"])
        async with _process(serve_args, env, "listening on") as (pid, lines):
            url = next(line for line in lines if "listening on" in line).split("listening on ")[1].split()[0]
            metrics_url = url.removesuffix("/mcp") + "/metrics"
            c = RawMcp(url, max_connections=workflows + 50)
            stop = asyncio.Event()
            async with c.http:
                sampler = asyncio.create_task(_sample(psutil.Process(pid), metrics_url, out, stop))
                t0 = time.perf_counter()
                await asyncio.gather(*(_follow(c, p, out, t0) for p in projects))
                out.seconds = time.perf_counter() - t0
                async with httpx2.AsyncClient(timeout=30) as http:
                    out.agent_executions = int(await _metric(http, metrics_url, "mo_agent_executions_total"))
                stop.set()
                await sampler
        memory_after = int((await redis.info("memory"))["used_memory"])
        out.redis_bytes_per_workflow = (memory_after - memory_before) / workflows
        await redis.aclose()
    return out
