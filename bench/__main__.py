"""`make bench`: run the benchmarks against a private redis-server and append BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from adapters import EmbeddedRedis
from bench import checkpointer
from bench._report import append_section


def main() -> int:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mo-bench-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", transport="tcp")
        with server:
            result = asyncio.run(checkpointer.run(server.url, rounds=args.rounds))
    body = "### 5. Checkpointer\n\n" + result.table()
    print(body)
    if not args.no_write:
        append_section("make bench", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
