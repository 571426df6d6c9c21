"""Benchmark 10: cost that stays flat as the work grows, and the long mode.

The same default-size productions as benchmark 4 (one `serve --http` process, the stand-ins in their own process,
L s per Task Service job, every decision answered) at 10, 100 and 1,000 in flight, each for the same time box:
server CPU per agent execution and resident memory per production in flight, in one table and one plot
(`docs/bench/flat-cost.png`). Whatever grows with the number of workflows in flight shows as a rising line.

Long mode (`make bench BENCH_ARGS=--long`): 1,000 default-size productions all run to completion, and their
wall time is set against their CPU lower bound (the CPU of server, stand-ins and Redis spread over the
machine's cores): the target is within 1.3x.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench import concurrency
from bench.concurrency import ConcurrencyResult

__all__ = ["PLOT", "FlatResult", "LongResult", "long_run", "run"]

SIZES = (10, 100, 1000)
PLOT = Path(__file__).resolve().parent.parent / "docs" / "bench" / "flat-cost.png"


@dataclass
class FlatResult:
    """Benchmark 10: one time-boxed run per size."""

    window: float
    job_latency: float
    runs: list[ConcurrencyResult] = field(default_factory=list)

    def _cpu(self, r: ConcurrencyResult) -> float:
        return r.cpu_ms_per_execution()["server"]

    def _memory(self, r: ConcurrencyResult) -> float:
        return (r.peak_rss_mb - r.base_rss_mb) / max(1, r.peak_in_flight)

    def headline(self) -> str:
        """CPU per agent execution at the smallest and largest size, against the targets."""
        if len(self.runs) < 2:
            return ""
        first, last = self._cpu(self.runs[0]), self._cpu(self.runs[-1])
        growth = last / first if first else float("nan")
        worst = max(self._cpu(r) for r in self.runs)
        return (f"- Server CPU per agent execution: **{first:.2f} ms** at {self.runs[0].workflows} in flight, "
                f"**{last:.2f} ms** at {self.runs[-1].workflows} ({growth:.2f}x; targets <= 2 ms: "
                f"{'met' if worst <= 2 else 'NOT met'}, <= 1.2x from {self.runs[0].workflows} to "
                f"{self.runs[-1].workflows}: {'met' if growth <= 1.2 else 'NOT met'}); memory per production in "
                f"flight {self._memory(self.runs[-1]) * 1024:.0f} KiB at {self.runs[-1].workflows}.")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md, with the plot."""
        rows = [
            f"| {r.workflows} | {r.peak_in_flight} | {r.agent_executions} | {self._cpu(r):.2f} ms | "
            f"{r.cpu_ms_per_execution()['redis']:.2f} ms | {r.peak_rss_mb:.0f} MB | {self._memory(r) * 1024:.0f} KiB | "
            f"{r.completed} |"
            for r in self.runs
        ]
        return "\n".join([
            "### 10. Cost as the work grows\n",
            f"Default-size `movie_production`s at each size in flight on one `serve --http` process, the stand-ins "
            f"in their own process (L = {self.job_latency:g} s per job), each size for a {self.window:g} s time box "
            "(what still runs then is cancelled). Memory per production: the server's resident memory at its peak "
            "over its idle resident memory, divided by the productions in flight.\n",
            "| in flight | peak in flight | agent executions | server CPU per agent execution | Redis CPU per agent "
            "execution | peak RSS | memory per production | completed in the box |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            f"\n![server CPU per agent execution and memory per production against productions in flight]"
            f"(docs/bench/{PLOT.name})",
        ])  # fmt: skip

    def plot(self) -> Path:
        """Write the PNG (two panels, log x) and return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sizes = [r.workflows for r in self.runs]
        fig, (cpu, mem) = plt.subplots(1, 2, figsize=(9, 3.6))
        cpu.plot(sizes, [self._cpu(r) for r in self.runs], marker="o")
        cpu.axhline(2.0, color="grey", linestyle="--", label="target 2 ms")
        cpu.set(
            xscale="log", xlabel="productions in flight", ylabel="ms", title="server CPU per agent execution"
        )
        cpu.set_ylim(bottom=0)
        cpu.legend()
        mem.plot(sizes, [self._memory(r) * 1024 for r in self.runs], marker="o", color="tab:orange")
        mem.set(xscale="log", xlabel="productions in flight", ylabel="KiB", title="memory per production")
        mem.set_ylim(bottom=0)
        fig.tight_layout()
        PLOT.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(PLOT, dpi=100)
        plt.close(fig)
        return PLOT


async def run(redis_url: str, tmp: Path, *, window: float = 40.0, job_latency: float = 2.0,
              sizes: tuple[int, ...] = SIZES, redis_pids: list[int] | None = None) -> FlatResult:  # fmt: skip
    """Benchmark 10 at each size, one after the other, each with its own key prefix."""
    out = FlatResult(window=window, job_latency=job_latency)
    for n in sizes:
        (tmp / f"flat{n}").mkdir(exist_ok=True)
        out.runs.append(await concurrency.run(redis_url, tmp / f"flat{n}", workflows=n, window=window,
                                              job_latency=job_latency, redis_pids=redis_pids))  # fmt: skip
    out.plot()
    return out


@dataclass
class LongResult:
    """The long mode: every production to completion, wall time against the CPU lower bound."""

    run: ConcurrencyResult
    cores: int

    @property
    def bound(self) -> float:
        """The CPU lower bound: all the CPU spent (server, stand-ins, Redis) spread over the cores."""
        r = self.run
        return (r.cpu_server + r.cpu_standins + r.cpu_redis) / self.cores

    def headline(self) -> str:
        """Completed productions and the ratio of wall time to the CPU lower bound."""
        r = self.run
        ratio = r.seconds / self.bound if self.bound else float("nan")
        return (f"- Long mode: **{r.completed} of {r.workflows}** default-size productions completed in "
                f"{r.seconds:.0f} s, **{ratio:.2f}x** their CPU lower bound of {self.bound:.0f} s (target all "
                f"complete and <= 1.3x: {'met' if r.completed == r.workflows and ratio <= 1.3 else 'NOT met'}).")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        r = self.run
        cpu = r.cpu_ms_per_execution()
        return "\n".join([
            "### 10b. Long mode (cost as the work grows, to completion)\n",
            f"{r.workflows} default-size productions on one `serve --http` process, the stand-ins in their own "
            f"process (L = {r.job_latency:g} s), no time box: every production to its end.\n",
            "| completed | failed | wall time | CPU server / stand-ins / Redis | CPU lower bound | wall / bound | "
            "CPU per agent execution (server) | peak RSS |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r.completed} | {r.failed} | {r.seconds:.0f} s | {r.cpu_server:.0f} / {r.cpu_standins:.0f} / "
            f"{r.cpu_redis:.0f} s | {self.bound:.0f} s ({self.cores} cores) | {r.seconds / self.bound:.2f}x | "
            f"{cpu['server']:.2f} ms | {r.peak_rss_mb:.0f} MB |",
        ])  # fmt: skip


async def long_run(redis_url: str, tmp: Path, *, workflows: int = 1000, job_latency: float = 2.0,
                   redis_pids: list[int] | None = None) -> LongResult:  # fmt: skip
    """1,000 default-size productions to completion."""
    r = await concurrency.run(redis_url, tmp, workflows=workflows, job_latency=job_latency, window=None,
                              redis_pids=redis_pids)  # fmt: skip
    return LongResult(r, os.cpu_count() or 1)
