"""How many CPU turns the engine gives out: all of them to one project, fewer while projects compete.

The fair gate (`adapters.CpuGate`) decides whose turn is next, but a project's next step also waits for every
callback of the event loop queued before it: with many turns out, each of another project's awaits pays
for all of them (measured: a production of B took 2.5x its time alone during a 200-production flood of A
with 16 fair turns, 1.2-1.5x with turns sized so the loop's lag stays near 10 ms: bench/fairness.py). So
while two or more projects have runs in progress (computing or waiting outside), the turns follow the
event loop's lag (AIMD: fewer at once when the p90 lag of the last half second is above the target, in
proportion to how far; one more when it is below half of it and runs wait); one project alone keeps every
turn, its throughput untouched.
"""

from __future__ import annotations

import asyncio

from adapters import CpuGate
from server.telemetry import Metrics

__all__ = ["LoopLagControl"]

_TICK = 0.05
_WINDOW = 0.5  # seconds between decisions


class LoopLagControl:
    """Sizes a gate's turns by the event loop's lag while projects compete; keeps the gate's gauges.

    Args:
        gate: the engine's CPU gate.
        most: the turns one project alone gets (``WORKER_CPU_TURNS``).
        least: the fewest turns (``WORKER_CPU_TURNS_MIN``).
        target: the p90 loop lag aimed at, in seconds (0: always `most`).
        metrics: the process's metrics (turns, waiting runs by project, loop lag).
    """

    def __init__(self, gate: CpuGate, *, most: int, least: int, target: float, metrics: Metrics) -> None:
        self.gate = gate
        self.most = most
        self.least = max(1, min(least, most))
        self.target = target
        self.metrics = metrics

    def decide(self, p90: float) -> int:
        """The turns for the next second, given the last second's p90 lag."""
        turns = self.gate.turns
        if self.target <= 0 or self.gate.tenants_running() < 2:
            return self.most
        if p90 > self.target:
            # Far above the target, cut in proportion: the lag grows with the turns out.
            return max(self.least, min(int(turns * 0.7), int(turns * self.target / p90)))
        if p90 < self.target / 2 and self.gate.waiting:
            return min(self.most, turns + 1)
        return turns

    async def run(self) -> None:
        """Sample the loop's lag every 50 ms and decide every half second (and when a second project arrives),
        until cancelled."""
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        since = loop.time()
        competing = False
        while True:
            t = loop.time()
            await asyncio.sleep(_TICK)
            now = loop.time()
            lag = max(0.0, now - t - _TICK)
            lags.append(lag)
            self.metrics.loop_lag.observe(lag)
            # Loop time, not a count of samples: a lagging loop takes fewer. A second project arriving is
            # decided on at once: it is the one the lag hurts.
            arrived = not competing and self.gate.tenants_running() >= 2
            competing = self.gate.tenants_running() >= 2
            if now - since < _WINDOW and not arrived:
                continue
            lags.sort()
            turns = self.decide(lags[max(0, int(len(lags) * 0.9) - 1)])
            lags.clear()
            since = now
            if turns != self.gate.turns:
                self.gate.set_capacity(turns)
            self.show()

    def show(self) -> None:
        """Bring the gate's gauges up to date."""
        self.metrics.cpu_turns.set(self.gate.turns)
        self.metrics.cpu_waiting.clear()
        for project, count in self.gate.waiting_by_tenant():
            self.metrics.cpu_waiting.labels(project).set(count)
