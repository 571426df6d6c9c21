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
from pathlib import Path

from adapters import EmbeddedCluster, EmbeddedRedis, free_port
from bench import checkpointer, concurrency, critical_path, frontdoor, peer, scaleout
from bench._report import append_section

BENCHMARKS = ["frontdoor", "critical_path", "concurrency", "scaleout", "checkpointer"]


def main() -> int:  # noqa: PLR0915 - one linear list of benchmarks reads better than fragments
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the short set: smaller loads, L = 0.5 s")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", default=None, help="repeatable")
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph Agent Server peer")
    args = parser.parse_args()
    only = set(args.only or BENCHMARKS)
    quick = args.quick
    headline: list[str] = []
    parts: list[str] = []
    timings: list[str] = []
    t0 = time.monotonic()

    def timed(name: str, started: float) -> None:
        line = f"{name}: {time.monotonic() - started:.0f} s"
        timings.append(line)
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="mo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("fd0", "fd1", "conc", "cp", "so"):
            (tmp / sub).mkdir()
        server = EmbeddedRedis(data_dir=tmp / "redis", transport="tcp")
        with server:
            if "frontdoor" in only:
                started = time.monotonic()
                runs = 100 if quick else 200
                ours = [asyncio.run(frontdoor.run(server.url, tmp / f"fd{n}", engine_processes=n, runs=runs))
                        for n in (0, 1)]  # fmt: skip
                if not args.no_peer:
                    pr = asyncio.run(peer.run(tmp, free_port(), runs=runs))
                    headline.append(frontdoor.ratios(ours, pr))
                    parts.append(frontdoor.comparison(ours, pr))
                parts += [fd.table() for fd in ours]
                timed("benchmarks 1-3 (front door, both sides)", started)
            if "critical_path" in only:
                started = time.monotonic()
                latency, sizes = (0.5, (1, 10)) if quick else (2.0, (1, 100))
                cp = asyncio.run(critical_path.run(server.url, tmp / "cp", latency=latency, sizes=sizes))
                headline.append(cp.headline())
                parts.append(cp.table())
                timed("benchmark 7 (critical path)", started)
            if "concurrency" in only:
                started = time.monotonic()
                workflows, window = (100, 40.0) if quick else (1000, 50.0)
                conc = asyncio.run(concurrency.run(server.url, tmp / "conc", workflows=workflows, window=window,
                                                   redis_pids=[server.pid] if server.pid else None))  # fmt: skip
                headline.append(conc.headline())
                parts.append(conc.table())
                timed("benchmark 4 (concurrency)", started)
            if "scaleout" in only:
                started = time.monotonic()
                with EmbeddedCluster(data_dir=tmp / "cluster") as cluster:
                    so = asyncio.run(scaleout.run(server, cluster, tmp / "so", quick=quick))
                headline.append(so.headline())
                parts.append(so.table())
                timed("benchmark 8 (scale-out)", started)
            if "checkpointer" in only:
                started = time.monotonic()
                result = asyncio.run(checkpointer.run(server.url, rounds=1 if quick else args.rounds))
                parts.append("### 5. Checkpointer\n\n" + result.table())
                timed("benchmark 5 (checkpointer)", started)
    timings.append(f"total: {time.monotonic() - t0:.0f} s")
    mode = "`make bench BENCH_ARGS=--quick` (the short set)" if quick else "`make bench`"
    body = "\n\n".join([
        f"Mode: {mode}.",
        "### Headline: ratios and targets\n\n" + "\n".join(h for h in headline if h),
        *parts,
        "Wall time per benchmark: " + "; ".join(timings) + ".",
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        append_section("make bench" + (" --quick" if quick else ""), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
