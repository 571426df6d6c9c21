"""Benchmark 13: healing after the Task Service loses its jobs (issue 23's measurement; not in the default set).

One orchestrator with the stand-ins in process, Task Service jobs of latency L, default settings. N default-
size productions start; once each has a job in flight the Task Service goes down for D seconds (every
route answers 503) and comes back restarted, without any of its tasks. Reported: when the last production
completed after the service's return (target <= 30 s), how many jobs were lost and submitted again, and
how many steps whose job survived were submitted twice (target 0). Run: ``python -m bench --only healing``.
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

__all__ = ["HealingResult", "run"]

TARGET = 30.0
OPTIONS = {"auto_approve": True}


@dataclass
class HealingResult:
    """Figures of benchmark 13."""

    productions: int
    outage: float
    latency: float
    after_return: list[float] = field(default_factory=list)  # each production's end, seconds after the return
    lost: int = 0
    resubmitted: int = 0
    twice_survived: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error: str = ""

    def headline(self) -> str:
        """One line against the targets."""
        if self.error or not self.after_return:
            return f"- Healing: NOT measured ({self.error[:200]})."
        last = max(self.after_return)
        met = (
            "met"
            if last <= TARGET and not self.twice_survived and self.statuses == {"completed": self.productions}
            else "NOT met"
        )
        return (f"- Healing: Task Service down {self.outage:g} s, restarted without its {self.lost} jobs in flight: the "
                f"last of {self.productions} productions completed **{last:.1f} s** after its return (target <= "
                f"{TARGET:g} s), {self.resubmitted} jobs submitted again, {self.twice_survived} surviving jobs "
                f"submitted twice: {met}.")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        if self.error or not self.after_return:
            return f"### 13. Healing\n\nNot measured: {self.error}"
        ends = sorted(self.after_return)
        return "\n".join([
            "### 13. Healing\n",
            f"{self.productions} default-size `movie_production`s, Task Service jobs of L = {self.latency:g} s, default "
            f"settings (TASK_POLL_SECONDS 5, breaker reset 30 s, probe every 2 s). With a job of each in flight the "
            f"Task Service went down for {self.outage:g} s and came back without its tasks.\n",
            "| jobs lost | submitted again | surviving jobs submitted twice | statuses | ends after the return "
            "(first / median / last) |",
            "|---:|---:|---:|---|---|",
            f"| {self.lost} | {self.resubmitted} | {self.twice_survived} | {self.statuses} | {ends[0]:.1f} / "
            f"{ends[len(ends) // 2]:.1f} / {ends[-1]:.1f} s |",
        ])  # fmt: skip


async def _see_through(orch: Orchestrator, project: str, ends: list[float]) -> str:
    started = await orch.service.start_workflow(Caller(), project_id=project, workflow="movie_production",
                                                options=OPTIONS)  # fmt: skip
    while True:
        st = await orch.service.wait_status(Caller(), started.workflow_id, 120, until=["completed", "failed"])
        if st.status in TERMINAL:
            ends.append(time.monotonic())
            return str(st.status)


async def run(
    redis_url: str, tmp: Path, *, productions: int = 10, outage: float = 60.0, latency: float = 1.0
) -> HealingResult:
    """Run benchmark 13 on `redis_url` in a key prefix of its own."""
    out = HealingResult(productions=productions, outage=outage, latency=latency)
    configure_logging("json", "warning", str(tmp / "healing.log"))
    settings = in_process_settings(redis_url, tmp, "heal")
    async with open_orchestrator(settings, sandbox=True, task_latency=latency) as (orch, sandbox):
        assert sandbox is not None
        ts = sandbox.task_service
        ends: list[float] = []
        runs = [asyncio.create_task(_see_through(orch, f"heal{i}", ends)) for i in range(productions)]
        deadline = time.monotonic() + 60
        while sum(t["status"] == "processing" for t in ts.tasks.values()) < productions:
            if time.monotonic() > deadline:
                out.error = "the productions did not all get a job in flight within 60 s"
                return out
            await asyncio.sleep(0.05)
        in_flight = {
            str(t["metadata"].get("idempotency_key"))
            for t in ts.tasks.values()
            if t["status"] == "processing"
        }
        ts.outage = True
        out.lost = ts.restart()
        await asyncio.sleep(outage)
        ts.outage = False
        back = time.monotonic()
        statuses = await asyncio.gather(*runs)
        out.after_return = [e - back for e in ends]
        out.statuses = {s: statuses.count(s) for s in set(statuses)}
        submits = ts.submits_by_key
        out.resubmitted = sum(n - 1 for k, n in submits.items() if k in in_flight)
        out.twice_survived = sum(1 for k, n in submits.items() if k not in in_flight and n > 1)
    return out
