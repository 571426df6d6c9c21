"""`make bench`: run the benchmarks against a private redis-server and append BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from adapters import EmbeddedRedis, free_port
from bench import checkpointer, concurrency, frontdoor, peer
from bench._report import append_section


def main() -> int:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--only", choices=["frontdoor", "concurrency", "checkpointer"], default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph Agent Server peer")
    args = parser.parse_args()
    parts: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mo-bench-") as tmp:
        for sub in ("fd0", "fd1", "conc"):
            (Path(tmp) / sub).mkdir()
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", transport="tcp")
        with server:
            if args.only in (None, "frontdoor"):
                ours = [asyncio.run(frontdoor.run(server.url, Path(tmp) / f"fd{n}", engine_processes=n))
                        for n in (0, 1)]  # fmt: skip
                parts += [fd.table() for fd in ours]
                if not args.no_peer:
                    pr = asyncio.run(peer.run(Path(tmp), free_port()))
                    parts.append(frontdoor.comparison(ours, pr))
            if args.only in (None, "concurrency"):
                parts.append(asyncio.run(concurrency.run(server.url, Path(tmp) / "conc")).table())
            if args.only in (None, "checkpointer"):
                result = asyncio.run(checkpointer.run(server.url, rounds=args.rounds))
                parts.append("### 5. Checkpointer\n\n" + result.table())
    parts.append(f"`make bench` took {time.monotonic() - t0:.0f} s.")
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        append_section("make bench", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
