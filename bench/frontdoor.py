"""Benchmarks 1-3 through the product's front door (MCP over Streamable HTTP), Redis durability.

1. Throughput: a 10-node linear graph (each node n + 1), 300 workflows, 50 concurrent, each started with
   start_workflow and awaited with get_status(wait_seconds) until completed.
2. Idle latency: one workflow at a time on an idle server, start to completed.
3. Status under load: get_status latency over the calls made while benchmark 1's load runs a second
   time (four callers, each asking again as soon as it has its answer), and the throughput of that load
   while probed. The peer is measured the same way (its threads.get_state, same four callers, during its
   own benchmark-1 load) through the same `measure()`: a `Side` only knows how to run one workflow and
   how to read one status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2

from graphs import DIAGNOSTIC_STEPS

__all__ = ["FrontDoorResult", "RawMcp", "Side", "measure", "run"]

NODES = DIAGNOSTIC_STEPS
WORKFLOW = "diagnostic_linear"
PROBERS = 4
PROBES = 500


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class FrontDoorResult:
    """Figures of benchmarks 1-3."""

    label: str = ""
    runs: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    status: list[float] = field(default_factory=list)
    probed_runs: int = 0
    probed_seconds: float = 0.0
    errors: int = 0

    @property
    def probed_runs_per_second(self) -> float:
        """Completed runs per second of the load while the status probers ran."""
        return self.probed_runs / self.probed_seconds if self.probed_seconds else 0.0

    @property
    def runs_per_second(self) -> float:
        """Completed runs per second under load."""
        return self.runs / self.seconds if self.seconds else 0.0

    @property
    def idle_median(self) -> float:
        """Median idle latency in seconds."""
        return statistics.median(self.idle) if self.idle else float("nan")

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        rps = self.runs / self.seconds if self.seconds else 0.0
        ms = 1000.0
        return "\n".join([
            f"### 1. Throughput — {self.label}\n",
            f"{NODES}-node linear graph ({WORKFLOW}), {self.runs} workflows, 50 concurrent, start_workflow + "
            "get_status(wait_seconds, until=terminal) as JSON-RPC posts over Streamable HTTP to a server process, "
            "checkpoints in Redis (durability sync).\n",
            "| runs/s | node executions/s | p50 end-to-end | p99 end-to-end | errors |",
            "|---:|---:|---:|---:|---:|",
            f"| {rps:.1f} | {rps * NODES:.0f} | {_pct(self.latencies, 0.5) * ms:.0f} ms | "
            f"{_pct(self.latencies, 0.99) * ms:.0f} ms | {self.errors} |",
            "\n### 2. Idle latency\n",
            f"One workflow at a time, start to completed, {len(self.idle)} runs: median "
            f"{statistics.median(self.idle) * ms:.1f} ms, best {min(self.idle) * ms:.1f} ms (target <= 15 ms).",
            "\n### 3. Status under load\n",
            f"get_status over Streamable HTTP during a second pass of benchmark 1's load ({PROBERS} callers back "
            f"to back), {len(self.status)} calls: p50 {_pct(self.status, 0.5) * ms:.1f} ms, "
            f"p99 {_pct(self.status, 0.99) * ms:.1f} ms; the load meanwhile {self.probed_runs_per_second:.1f} runs/s "
            "(against the peer: see 1-3 above).",
        ])  # fmt: skip


class RawMcp:
    """MCP tools/call over Streamable HTTP as plain JSON-RPC posts on one keep-alive connection pool.

    The SDK's Client costs more CPU per call than the server's work; the peer is driven with its own thin
    client (langgraph-sdk), so ours is driven thinly too. Same endpoint, same protocol.
    """

    def __init__(self, url: str, *, max_connections: int = 200) -> None:
        self.url = url
        self.http = httpx2.AsyncClient(timeout=120, limits=httpx2.Limits(max_connections=max_connections))
        self._id = 0
        self._headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
        }

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tools/call. A connection the server closed while idle (keep-alive race) is retried once:
        callers make their calls safe to repeat (an idempotency key on start_workflow)."""
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}  # fmt: skip
        try:
            resp = await self.http.post(self.url, json=body, headers=self._headers)
        except (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError):
            resp = await self.http.post(self.url, json=body, headers=self._headers)
        result = resp.json()["result"]
        if result.get("isError"):
            raise RuntimeError(str(result.get("content")))
        return dict(result["structuredContent"])


async def _wait_done(c: RawMcp, wid: str) -> None:
    while True:
        st = await c.call_tool(
            "get_status",
            {"workflow_id": wid, "wait_seconds": 30, "until": ["completed", "failed", "cancelled"]},
        )
        if st["status"] == "completed":
            return
        if st["status"] in {"failed", "cancelled"}:
            msg = f"workflow {wid} ended {st['status']}: {st['last_error']}"
            raise RuntimeError(msg)


class Side(Protocol):
    """One implementation as benchmarks 1-3 drive it."""

    async def one(self) -> bool:
        """Run one workflow start to end; True when it completed right."""
        ...

    async def status(self) -> None:
        """Read the status of the probe workflow once."""
        ...


async def _side_load(side: Side, runs: int, concurrency: int) -> tuple[list[float], int]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with sem:
            t0 = time.perf_counter()
            try:
                ok = await side.one()
            except Exception:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    await asyncio.gather(*(one() for _ in range(runs)))
    return latencies, errors


async def measure(side: Side, out: FrontDoorResult, *, runs: int = 300, concurrency: int = 50) -> None:
    """Benchmarks 2, 1 and 3 on one side: idle latency, throughput, then status under the same load."""
    for _ in range(25):  # 2. idle latency (first 5 are warm-up)
        t0 = time.perf_counter()
        if await side.one():
            out.idle.append(time.perf_counter() - t0)
    out.idle = out.idle[5:]
    t_start = time.perf_counter()  # 1. throughput: the load alone
    out.latencies, out.errors = await _side_load(side, runs, concurrency)
    out.seconds = time.perf_counter() - t_start
    out.runs = len(out.latencies)
    # 3. the same load again with PROBERS callers reading a status back to back; the load's throughput
    # meanwhile is reported (probing costs the server too), not counted in benchmark 1.
    done = asyncio.Event()

    async def prober() -> None:
        while not done.is_set() and len(out.status) < PROBES:
            t0 = time.perf_counter()
            await side.status()
            out.status.append(time.perf_counter() - t0)

    probes = asyncio.gather(*(prober() for _ in range(PROBERS)))
    t_start = time.perf_counter()
    probed, _ = await _side_load(side, runs, concurrency)
    out.probed_seconds = time.perf_counter() - t_start
    out.probed_runs = len(probed)
    done.set()
    await probes


class _OurSide:
    def __init__(self, c: RawMcp) -> None:
        self.c = c
        self.probe_id = ""

    async def one(self) -> bool:
        r = await self.c.call_tool("start_workflow", {"project_id": "bench", "workflow": WORKFLOW})
        await _wait_done(self.c, r["workflow_id"])
        return True

    async def status(self) -> None:
        if not self.probe_id:
            r = await self.c.call_tool("start_workflow", {"project_id": "bench", "workflow": WORKFLOW})
            self.probe_id = r["workflow_id"]
        await self.c.call_tool("get_status", {"workflow_id": self.probe_id})


@contextlib.asynccontextmanager
async def _server(redis_url: str, tmp: Path, *args: str) -> AsyncIterator[str]:
    """`movie-orchestrator serve --http` in its own process (its own core); yields the MCP URL."""
    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": f"b{uuid.uuid4().hex[:6]}", "LOG_LEVEL": "warning",
           "LOG_FILE": str(tmp / "bench-server.log"), "LOG_FORMAT": "json"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--http", "127.0.0.1:0", "--no-auth", "--data-dir", str(tmp / "d"),
        *args, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    url = ""
    while not url:
        line = (await proc.stderr.readline()).decode()
        if not line:
            msg = f"benchmark server exited; see {tmp / 'bench-server.log'}"
            raise RuntimeError(msg)
        if "listening on" in line:
            url = line.split("listening on ")[1].split()[0]
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def run(
    redis_url: str, tmp: Path, *, runs: int = 300, concurrency: int = 50, engine_processes: int = 0
) -> FrontDoorResult:
    """Run benchmarks 1-3 against a server process on `redis_url` (engines in N children if given)."""
    label = (f"`serve --http --engine-processes {engine_processes}` (MCP in one process, workflows in "
             f"{engine_processes} more)" if engine_processes else "`serve --http` (one process)")  # fmt: skip
    out = FrontDoorResult(label=label)
    extra = ["--engine-processes", str(engine_processes)]  # 0 too: the default depends on the cores
    async with _server(redis_url, tmp, *extra) as url:
        c = RawMcp(url)
        async with c.http:
            side = _OurSide(c)
            await side.status()  # the probe workflow exists before the load
            await measure(side, out, runs=runs, concurrency=concurrency)
    return out


def ratios(ours: list[FrontDoorResult], peer: FrontDoorResult) -> str:
    """The headline: every ratio against the peer of the same run, with its target."""
    ms = 1000.0
    lines = ["### Ratios against the peer (same run, same machine)\n"]
    for r in ours:
        ratio = r.runs_per_second / peer.runs_per_second if peer.runs_per_second else float("nan")
        target = 2.0 if "one process" in r.label else 2.5
        lines.append(f"- Throughput, {r.label}: **{ratio:.2f}x** the peer (target >= {target:g}x: "
                     f"{'met' if ratio >= target else 'NOT met'}).")  # fmt: skip
    for r in ours:
        p99, peer_p99 = _pct(r.status, 0.99), _pct(peer.status, 0.99)
        probed = (
            r.probed_runs_per_second / peer.probed_runs_per_second if peer.probed_runs_per_second else 0.0
        )
        p50, peer_p50 = _pct(r.status, 0.5), _pct(peer.status, 0.5)
        ok = p50 <= peer_p50 and p99 <= peer_p99
        lines.append(
            f"- Status under load, {r.label}: p50 **{p50 * ms:.1f} ms** / p99 **{p99 * ms:.1f} ms** against the "
            f"peer's {peer_p50 * ms:.1f} / {peer_p99 * ms:.1f} ms (target p50 and p99 <= the peer's: "
            f"{'met' if ok else 'NOT met'}); throughput while probed **{probed:.2f}x** the peer's."
        )
        idle = r.idle_median * ms
        lines.append(f"- Idle latency, {r.label}: **{idle:.1f} ms** start to completed (the peer "
                     f"{peer.idle_median * ms:.0f} ms; target <= 15 ms: {'met' if idle <= 15 else 'NOT met'}).")  # fmt: skip
    return "\n".join(lines)


def comparison(ours: list[FrontDoorResult], peer: FrontDoorResult) -> str:
    """Markdown comparing benchmarks 1-3 with the LangGraph Agent Server peer of the same run."""
    ms = 1000.0

    def row(name: str, r: FrontDoorResult) -> str:
        return (f"| {name} | {r.runs_per_second:.1f} | {r.runs_per_second * NODES:.0f} | "
                f"{_pct(r.latencies, 0.5) * ms:.0f} ms | {_pct(r.latencies, 0.99) * ms:.0f} ms | "
                f"{r.idle_median * ms:.1f} ms | {r.errors} |")  # fmt: skip

    def row3(name: str, r: FrontDoorResult, call: str) -> str:
        return (f"| {name} | {call} | {len(r.status)} | {_pct(r.status, 0.5) * ms:.1f} ms | "
                f"{_pct(r.status, 0.99) * ms:.1f} ms | {r.probed_runs_per_second:.1f} |")  # fmt: skip

    lines = [
        "### 1-2. Against the peer (LangGraph Agent Server, `langgraph dev`, in-memory runtime, same graph, "
        "same machine, same run; driven with langgraph-sdk `runs.wait`, a thread per run)\n",
        "| | runs/s | node executions/s | p50 | p99 | idle latency (median) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(row(f"movie-orchestrator, {r.label}", r) for r in ours),
        row("LangGraph Agent Server (in memory, one process)", peer),
        "",
        f"### 3. Status under load, both sides ({PROBERS} callers back to back during each side's own "
        "second pass of benchmark 1's load)\n",
        "| | status call | calls | p50 | p99 | runs/s while probed |",
        "|---|---|---:|---:|---:|---:|",
        *(row3(f"movie-orchestrator, {r.label}", r, "MCP `get_status`") for r in ours),
        row3("LangGraph Agent Server", peer, "`threads.get_state`"),
    ]
    return "\n".join(lines)
