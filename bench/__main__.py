"""`make bench`: run the benchmarks against private Redis servers and append BENCHMARKS.md.

Ratios and targets come first in the report; every benchmark's own wall time is printed. `--quick`
runs a short set (smaller loads, a shorter job latency); `--only NAME` (repeatable) picks benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapters import EmbeddedCluster, EmbeddedRedis, free_port
from bench import (
    checkpointer,
    costmodel,
    critical_path,
    fairness,
    flat,
    frontdoor,
    healing,
    peer,
    scaleout,
    tracing,
)
from bench._report import append_section

BENCHMARKS = [
    "frontdoor",
    "critical_path",
    "concurrency",
    "costmodel",
    "scaleout",
    "checkpointer",
    "fairness",
    "tracing",
]
# Run only when asked for (--only): longer than the whole default set allows.
ON_REQUEST = ["healing"]


@dataclass
class Run:
    """One `make bench`: its options, the private Redis, and what the report gathers."""

    args: argparse.Namespace
    tmp: Path
    server: EmbeddedRedis
    headline: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)

    def timed(self, name: str, started: float) -> None:
        line = f"{name}: {time.monotonic() - started:.0f} s"
        self.timings.append(line)
        print(f"[bench] {line}", file=sys.stderr, flush=True)


def _frontdoor(run: Run) -> None:
    runs = 100 if run.args.quick else 200
    ours = [asyncio.run(frontdoor.run(run.server.url, run.tmp / f"fd{n}", engine_processes=n, runs=runs))
            for n in (0, 1)]  # fmt: skip
    if not run.args.no_peer:
        pr = asyncio.run(peer.run(run.tmp, free_port(), runs=runs))
        run.headline.append(frontdoor.ratios(ours, pr))
        run.parts.append(frontdoor.comparison(ours, pr))
    run.parts += [fd.table() for fd in ours]


def _critical_path(run: Run) -> None:
    latency, sizes = (0.5, (1, 10)) if run.args.quick else (2.0, (1, 100))
    cp = asyncio.run(critical_path.run(run.server.url, run.tmp / "cp", latency=latency, sizes=sizes))
    run.headline.append(cp.headline())
    run.parts.append(cp.table())


def _concurrency(run: Run) -> None:
    # 30 s a size: CPU per agent execution and memory per production settle well within it (40 s before; the
    # 10 minutes of make bench needed the time)
    sizes, window = ((10, 100), 30.0) if run.args.quick else (flat.SIZES, 30.0)
    pids = [run.server.pid] if run.server.pid else None
    result = asyncio.run(
        flat.run(run.server.url, run.tmp / "conc", window=window, sizes=sizes, redis_pids=pids)
    )
    largest = result.runs[-1]
    run.headline += [largest.headline(), result.headline()]
    run.parts += [largest.table(), result.table()]


def _costmodel(run: Run) -> None:
    workflows, productions = (50, 5) if run.args.quick else (100, 10)
    run.parts.append(asyncio.run(costmodel.run(workflows=workflows, productions=productions)).table())


def _long(run: Run) -> None:
    pids = [run.server.pid] if run.server.pid else None
    result = asyncio.run(flat.long_run(run.server.url, run.tmp / "long", redis_pids=pids))
    run.headline.append(result.headline())
    run.parts.append(result.table())


def _scaleout(run: Run) -> None:
    with EmbeddedCluster(data_dir=run.tmp / "cluster") as cluster:
        so = asyncio.run(scaleout.run(run.server, cluster, run.tmp / "so", quick=run.args.quick))
    run.headline.append(so.headline())
    run.parts.append(so.table())


def _checkpointer(run: Run) -> None:
    result = asyncio.run(checkpointer.run(run.server.url, rounds=1 if run.args.quick else run.args.rounds))
    run.parts.append("### 5. Checkpointer\n\n" + result.table())


def _fairness(run: Run) -> None:
    flood, latency = (50, 0.5) if run.args.quick else (200, 1.0)
    result = asyncio.run(fairness.run(run.server.url, run.tmp / "fair", flood=flood, latency=latency))
    run.headline.append(result.headline())
    run.parts.append(result.table())


def _tracing(run: Run) -> None:
    result = asyncio.run(
        tracing.run(run.server.url, run.tmp / "trace", productions=5 if run.args.quick else 10)
    )
    run.headline.append(result.headline())
    run.parts.append(result.table())


def _healing(run: Run) -> None:
    outage = 10.0 if run.args.quick else 60.0
    result = asyncio.run(healing.run(run.server.url, run.tmp / "heal", outage=outage))
    run.headline.append(result.headline())
    run.parts.append(result.table())


# In the order they run, with the name their wall time is reported under.
_STEPS: dict[str, tuple[str, Callable[[Run], None]]] = {
    "frontdoor": ("benchmarks 1-3 (front door, both sides)", _frontdoor),
    "critical_path": ("benchmark 7 (critical path)", _critical_path),
    "concurrency": ("benchmarks 4 and 10 (concurrency, cost as the work grows)", _concurrency),
    "costmodel": ("benchmark 9 (cost of one step)", _costmodel),
    "scaleout": ("benchmark 8 (scale-out)", _scaleout),
    "checkpointer": ("benchmark 5 (checkpointer)", _checkpointer),
    "fairness": ("benchmark 11 (fairness)", _fairness),
    "tracing": ("benchmark 12 (tracing cost)", _tracing),
    "healing": ("benchmark 13 (healing)", _healing),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the short set: smaller loads, L = 0.5 s")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument(
        "--only", choices=BENCHMARKS + ON_REQUEST, action="append", default=None, help="repeatable"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph Agent Server peer")
    parser.add_argument("--long", action="store_true",
                        help="also the long mode: 1,000 productions to completion (not part of the 10 minutes)")  # fmt: skip
    return parser


def main() -> int:
    """Run the benchmarks and write the report."""
    args = _parser().parse_args()
    only = set(args.only or BENCHMARKS)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("fd0", "fd1", "conc", "cp", "so", "long", "fair", "trace", "heal"):
            (tmp / sub).mkdir()
        with EmbeddedRedis(data_dir=tmp / "redis", transport="tcp") as server:
            run = Run(args, tmp, server)
            steps = [
                *_STEPS.items(),
                *([("long", ("benchmark 10b (long mode)", _long))] if args.long else []),
            ]
            for name, (title, step) in steps:
                if name in only or name == "long":
                    started = time.monotonic()
                    step(run)
                    run.timed(title, started)
    run.timings.append(f"total: {time.monotonic() - t0:.0f} s")
    mode = "`make bench BENCH_ARGS=--quick` (the short set)" if args.quick else "`make bench`"
    if args.only:
        mode += f", only {', '.join(args.only)}"
    body = "\n\n".join([
        f"Mode: {mode}.",
        "### Headline: ratios and targets\n\n" + "\n".join(h for h in run.headline if h),
        *run.parts,
        "Wall time per benchmark: " + "; ".join(run.timings) + ".",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        # A run of some benchmarks (--only) is named for them: it is not the latest full run the report opens with.
        picked = f" --only {' '.join(args.only)}" if args.only else ""
        append_section("make bench" + (" --quick" if args.quick else "") + picked, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
