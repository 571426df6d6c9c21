"""Benchmark 11: fair share between projects (issue 23's measurement).

One orchestrator with the stand-ins in process (as the issue measured it), Task Service jobs of latency L.
Project B's production alone, then three rounds, each in a fresh orchestrator: a flood of N productions of
project A started at once, and B's same production 1.5 s later. B's time in the flood over its time alone is
the ratio (target <= 1.5x); the median of the rounds is reported, with the event loop's lag and the CPU turns
the engine gave out meanwhile. The flood is not waited for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapters import TERMINAL
from bench.concurrency import in_process_settings
from server import Caller, Orchestrator, open_orchestrator
from server.telemetry import configure_logging

__all__ = ["FairnessResult", "Round", "run"]

TARGET = 1.5
OPTIONS = {"auto_approve": True}
ENDS = ["completed", "failed", "cancelled"]


@dataclass
class Round:
    """One production of B during the flood (seconds)."""

    flood: float = 0.0
    a_done_before_b: int = 0
    lag_ms: dict[int, float] = field(default_factory=dict)
    turns: list[int] = field(default_factory=list)
    error: str = ""


@dataclass
class FairnessResult:
    """Figures of benchmark 11."""

    flood: int
    latency: float
    alone: float = 0.0
    started_in: float = 0.0
    rounds: list[Round] = field(default_factory=list)
    error: str = ""

    def ratio(self, r: Round) -> float:
        """B's time in the flood over its time alone."""
        return r.flood / self.alone if self.alone else float("nan")

    def median(self) -> Round | None:
        """The round of the median time, None when none completed."""
        ok = sorted((r for r in self.rounds if not r.error), key=lambda r: r.flood)
        return ok[len(ok) // 2] if ok and len(ok) == len(self.rounds) else None

    def headline(self) -> str:
        """One line: B alone, B during the flood, the ratio against the target."""
        m = self.median()
        if m is None:
            why = self.error or next((r.error for r in self.rounds if r.error), "no round")
            return f"- Fairness: NOT measured ({why[:200]})."
        met = "met" if self.ratio(m) <= TARGET else "NOT met"
        return (f"- Fairness: project B's production {self.alone:.1f} s alone, {m.flood:.1f} s during a "
                f"{self.flood}-production flood of project A (**{self.ratio(m):.2f}x**, target <= {TARGET}x: "
                f"{met}; median of {len(self.rounds)}, L = {self.latency:g} s).")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        lines = [
            "### 11. Fairness between projects\n",
            f"One process with the stand-ins in it, Task Service jobs of L = {self.latency:g} s; `movie_production` "
            f"(auto_approve, default size). B's production alone took {self.alone:.1f} s; then {self.flood} of "
            f"project A were started at once (in {self.started_in:.1f} s at most) and B's production 1.5 s later, "
            f"in {len(self.rounds)} round(s) (a fresh orchestrator and flood each). Loop lag: how late a 50 ms timer fired "
            "during each of B's productions.\n",
            "| round | B in the flood | ratio to alone | A's done before it ended | loop lag p50/p90/p99 "
            "| CPU turns seen |",
            "|---:|---:|---:|---:|---|---|",
        ]
        for i, r in enumerate(self.rounds, 1):
            if r.error:
                lines.append(f"| {i} | | | | | {r.error[:120]} |")
                continue
            lag = "/".join(f"{r.lag_ms.get(q, 0):.1f}" for q in (50, 90, 99))
            lines.append(f"| {i} | {r.flood:.1f} s | {self.ratio(r):.2f}x | {r.a_done_before_b} | {lag} ms | "
                         f"{min(r.turns, default=0)}-{max(r.turns, default=0)} |")  # fmt: skip
        m = self.median()
        if m is not None:
            lines.append(f"\nMedian {self.ratio(m):.2f}x (target <= {TARGET}x).")
        return "\n".join(lines)


async def _start(orch: Orchestrator, project: str) -> str:
    started = await orch.service.start_workflow(Caller(), project_id=project, workflow="movie_production",
                                                options=OPTIONS)  # fmt: skip
    return started.workflow_id


async def _end(orch: Orchestrator, wid: str) -> str:
    """Wait for the workflow's end: its status (and error)."""
    while True:
        st = await orch.service.wait_status(Caller(), wid, 120, until=ENDS)
        if st.status in TERMINAL:
            return f"{st.status} {st.last_error[:200]}".strip()


async def _production(orch: Orchestrator, project: str) -> tuple[float, str]:
    """Start one production and wait for its end: (seconds, status)."""
    t0 = time.perf_counter()
    status = await _end(orch, await _start(orch, project))
    return time.perf_counter() - t0, status


async def _during(orch: Orchestrator, ends: list[float]) -> Round:
    """B's production while the flood runs, with the loop's lag and the turns meanwhile."""
    out = Round()
    lags: list[float] = []
    turns: set[int] = set()

    async def sample() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - t - 0.05)
            turns.add(orch.engine.gate.turns if orch.engine is not None else 0)

    sampler = asyncio.create_task(sample())
    try:
        out.flood, status = await _production(orch, "projB")
    finally:
        sampler.cancel()
    if not status.startswith("completed"):
        out.error = status
    lags.sort()
    out.lag_ms = {q: lags[max(0, int(len(lags) * q / 100) - 1)] * 1000 for q in (50, 90, 99)} if lags else {}
    out.a_done_before_b = len(ends)
    out.turns = sorted(turns)
    return out


async def _flooded(orch: Orchestrator, flood: int, out: FairnessResult) -> Round:
    """Start the flood of A, then B's production 1.5 s later; the flood is left running."""
    ends: list[float] = []

    async def one_of_a(wid: str) -> None:
        await _end(orch, wid)
        ends.append(time.perf_counter())

    async def start_flood() -> list[str]:
        t0 = time.perf_counter()
        wids = await asyncio.gather(*(_start(orch, "projA") for _ in range(flood)))
        out.started_in = max(out.started_in, time.perf_counter() - t0)
        return list(wids)

    starting = asyncio.create_task(start_flood())
    await asyncio.sleep(1.5)
    floods = [asyncio.create_task(one_of_a(w)) for w in await starting]
    try:
        return await _during(orch, ends)
    finally:
        for t in floods:
            t.cancel()
        await asyncio.gather(*floods, return_exceptions=True)


async def run(
    redis_url: str, tmp: Path, *, flood: int = 200, latency: float = 1.0, rounds: int = 3
) -> FairnessResult:
    """Run benchmark 11 on `redis_url`: each round in an orchestrator and key prefix of its own."""
    out = FairnessResult(flood=flood, latency=latency)
    configure_logging("json", "warning", str(tmp / "fairness.log"))  # in process: not on the report's stdout
    for i in range(rounds):
        settings = in_process_settings(redis_url, tmp, "fair")
        async with open_orchestrator(settings, sandbox=True, task_latency=latency) as (orch, _):
            if i == 0:
                assert orch.engine is not None
                orch.engine.graph("movie_production")  # compiled before anything is timed
                out.alone, status = await _production(orch, "projB")
                if not status.startswith("completed"):
                    out.error = f"B alone: {status}"
                    return out
            out.rounds.append(await _flooded(orch, flood, out))
    return out
