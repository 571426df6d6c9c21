"""Benchmark 7: how close default-size productions come to their critical path.

The stand-ins run in their own process with a fixed latency L per Task Service job; a production's
decisions are answered L after the driver sees them (a reviewer as quick as a job). Each job the
orchestrator submits carries the graph superstep and task that submitted it (job metadata), and the
sandbox lists a workflow's jobs (`/sandbox/jobs?workflow_id=`). The lower bound of one production is
computed from that, not written down:

    bound = L x ( sum over supersteps of the longest chain of jobs in any one task of the step
                  + the number of decisions )

(jobs of one task that overlapped in time count once: they ran side by side). Everything else, the
Brain's agents, Redis, LangGraph, MCP, is the orchestrator's own time, which the ratio makespan / bound
exposes. Target: <= 1.1x at L = 2 s for 1 and for 100 concurrent productions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from bench.concurrency import WAIT_FOR, _process, _projects, _sandbox_env, one_process_server, sandbox_args
from bench.frontdoor import RawMcp

__all__ = ["CriticalPathResult", "bound_units", "run"]

TARGET = 1.5


def _t(iso: str | None) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else float("inf")


def bound_units(jobs: list[dict[str, Any]]) -> int:
    """Sum over supersteps of the longest chain of sequential jobs within one graph task."""
    steps: dict[Any, dict[str, list[dict[str, Any]]]] = {}
    for j in jobs:
        meta = j.get("metadata") or {}
        steps.setdefault(meta.get("graph_step"), {}).setdefault(str(meta.get("graph_task", "")), []).append(j)
    total = 0
    for tasks in steps.values():
        longest = 0
        for task_jobs in tasks.values():
            ordered = sorted(task_jobs, key=lambda j: _t(j["created_at"]))
            depth: list[int] = []
            for i, j in enumerate(ordered):
                before = [depth[k] for k in range(i) if _t(ordered[k]["completed_at"]) <= _t(j["created_at"])]
                depth.append(1 + max(before, default=0))
            longest = max(longest, max(depth, default=0))
        total += longest
    return total


@dataclass
class Production:
    """One production's figures."""

    workflow_id: str = ""
    makespan: float = 0.0
    decisions: int = 0
    jobs: int = 0
    units: int = 0
    error: str = ""

    def bound(self, latency: float) -> float:
        """The critical-path lower bound in seconds."""
        return latency * (self.units + self.decisions)


@dataclass
class Batch:
    """N productions started together."""

    size: int
    wall: float = 0.0
    productions: list[Production] = field(default_factory=list)


@dataclass
class CriticalPathResult:
    """Figures of benchmark 7."""

    latency: float = 2.0
    batches: list[Batch] = field(default_factory=list)

    def headline(self) -> str:
        """One line per batch: the worst ratio against the target."""
        out = []
        for b in self.batches:
            ok = [p for p in b.productions if not p.error and p.units]
            worst = max((p.makespan / p.bound(self.latency) for p in ok), default=float("nan"))
            met = bool(ok) and worst <= TARGET and len(ok) == len(b.productions)
            out.append(f"- Critical path, {b.size} production(s) at once, L = {self.latency:g} s: makespan "
                       f"**{worst:.3f}x** the bound at worst (target <= {TARGET}x: {'met' if met else 'NOT met'}).")  # fmt: skip
        return "\n".join(out)

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        lines = [
            "### 7. Critical path\n",
            f"Default-size `movie_production`s (6 scenes, 3 characters) on one `serve --http` process, the "
            f"stand-ins in their own process with L = {self.latency:g} s per Task Service job, each decision "
            "answered L after it is seen. Bound = L x (sum over supersteps of the longest chain of jobs in one "
            "graph task + decisions), from the jobs' recorded graph step and task.\n",
            "| productions at once | jobs per production | bound | makespan p50 | makespan max | "
            f"ratio p50 | ratio max | wall time | errors | target <= {TARGET}x |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for b in self.batches:
            ok = [p for p in b.productions if not p.error and p.units]
            errors = len(b.productions) - len(ok)
            if not ok:
                lines.append(f"| {b.size} | | | | | | | {b.wall:.1f} s | {errors} | NOT met |")
                continue
            ratios = [p.makespan / p.bound(self.latency) for p in ok]
            spans = [p.makespan for p in ok]
            bounds = [p.bound(self.latency) for p in ok]
            verdict = "met" if max(ratios) <= TARGET and not errors else "NOT met"
            lines.append(
                f"| {b.size} | {statistics.median(p.jobs for p in ok):.0f} | {statistics.median(bounds):.1f} s | "
                f"{statistics.median(spans):.1f} s | {max(spans):.1f} s | {statistics.median(ratios):.3f}x | "
                f"{max(ratios):.3f}x | {b.wall:.1f} s | {errors} | {verdict} |"
            )
        first = next((p for b in self.batches for p in b.productions if p.error), None)
        if first is not None:
            lines.append(f"\nFirst error: {first.error[:300]}")
        return "\n".join(lines)


async def _produce(c: RawMcp, project_id: str, latency: float) -> Production:
    out = Production()
    t0 = time.perf_counter()
    try:
        started = await c.call_tool("start_workflow", {"project_id": project_id, "workflow": "movie_production",
                                                        "idempotency_key": f"cp-{project_id}"})  # fmt: skip
        out.workflow_id = started["workflow_id"]
        while True:
            st = await c.call_tool("get_status", {"workflow_id": out.workflow_id, "wait_seconds": 60,
                                                  "until": WAIT_FOR})  # fmt: skip
            if st["status"] == "completed":
                out.makespan = time.perf_counter() - t0
                return out
            if st["status"] in {"failed", "cancelled"}:
                out.error = f"{out.workflow_id}: {st['status']}: {st.get('last_error', '')}"
                return out
            pending = st.get("pending_decisions", []) if st["status"] == "waiting_decision" else []
            if pending:
                await asyncio.sleep(latency)  # the reviewer takes as long as a job
            for d in pending:
                choice = d.get("context", {}).get("recommended") or d["options"][0]
                await c.call_tool("submit_decision",
                                  {"workflow_id": out.workflow_id, "decision_id": d["id"], "choice": choice})  # fmt: skip
                out.decisions += 1
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        return out


async def _jobs(http: httpx2.AsyncClient, p: Production) -> None:
    if not p.workflow_id:
        return
    resp = await http.get("/sandbox/jobs", params={"workflow_id": p.workflow_id})
    jobs = resp.json()["jobs"]
    p.jobs, p.units = len(jobs), bound_units(jobs)


async def run(
    redis_url: str, tmp: Path, *, latency: float = 2.0, sizes: tuple[int, ...] = (1, 100)
) -> CriticalPathResult:
    """Run benchmark 7 on `redis_url`: a batch of each size, one after the other, on one server."""
    out = CriticalPathResult(latency=latency)
    base_env = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    async with _process(sandbox_args(tmp, latency), base_env, "AUTO_MOVIE_URL=") as (_, sandbox_lines):
        services = _sandbox_env(sandbox_lines)
        env = {**base_env, **services, "REDIS_URL": redis_url, "KEY_PREFIX": f"p{uuid.uuid4().hex[:6]}",
               "LOG_FILE": str(tmp / "critical-path-server.log")}  # fmt: skip
        serve_args = one_process_server(tmp / "cp")
        async with _process(serve_args, env, "listening on") as (_, lines):
            url = next(line for line in lines if "listening on" in line).split("listening on ")[1].split()[0]
            c = RawMcp(url, max_connections=max(sizes) + 50)
            async with c.http, httpx2.AsyncClient(base_url=services["TASK_SERVICE_URL"], timeout=60) as ts:
                for size in sizes:
                    projects = await _projects(services, size)
                    t0 = time.perf_counter()
                    batch = Batch(size=size)
                    batch.productions = list(
                        await asyncio.gather(*(_produce(c, p, latency) for p in projects))
                    )
                    batch.wall = time.perf_counter() - t0
                    for p in batch.productions:
                        await _jobs(ts, p)
                    out.batches.append(batch)
    return out
