"""`make bench`: run the benchmarks against a private redis-server and append BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from adapters import EmbeddedRedis, free_port
from bench import checkpointer, frontdoor, peer
from bench._report import append_section


def main() -> int:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--only", choices=["frontdoor", "checkpointer"], default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the LangGraph Agent Server peer")
    args = parser.parse_args()
    parts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mo-bench-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", transport="tcp")
        with server:
            if args.only in (None, "frontdoor"):
                fd = asyncio.run(frontdoor.run(server.url, Path(tmp)))
                parts.append(fd.table())
                if not args.no_peer:
                    pr = asyncio.run(peer.run(Path(tmp), free_port()))
                    parts.append(frontdoor.comparison(fd, pr))
            if args.only in (None, "checkpointer"):
                result = asyncio.run(checkpointer.run(server.url, rounds=args.rounds))
                parts.append("### 5. Checkpointer\n\n" + result.table())
    parts.append("\nNot measured yet: benchmark 4 (1,000 movie_production workflows in flight).")
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        append_section("make bench", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
