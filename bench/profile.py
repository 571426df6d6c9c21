"""Where the one-process server's CPU goes under benchmark 1's load: py-spy, summarised for BENCHMARKS.md.

    python -m bench.profile --label "after: ..."            # profile now and print the summary
    python -m bench.profile --raw FILE --label "before: ..." # summarise an earlier py-spy raw file
    add --write to append the summary to BENCHMARKS.md

py-spy samples the driver and the server process it starts (`--subprocesses`, 100 Hz); only the server's
samples are counted, start-up imports left out. Two views: self time by package (adds up to 100 %), and
the inclusive share of the parts we can act on (they overlap: the engine includes LangGraph and the
checkpointer).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench._report import append_section

__all__ = ["summarise"]

_SERVER = "-m server serve"
# (label, pattern on one frame "function (file:line)") for the inclusive view
_PARTS = [
    ("MCP SDK request path (dispatch, middleware, extensions, tool lookup; tools below)",
     r"ServerRunner\._on_request \(mcp/"),
    ("our MCP tools (get_status, start_workflow, ...)", r"Tools\.run \(server/mcp/_tools\.py|as_tool_error \(server/mcp/_tools\.py"),
    ("HTTP (uvicorn, Starlette, the SDK's Streamable HTTP transport)", r"run_asgi \(uvicorn/"),
    ("engine runs (claim to end, LangGraph included)", r"WorkflowRun\.execute \(server/engine/_run\.py"),
    ("LangGraph Pregel loop", r"Pregel\.astream \(pregel/"),
    ("checkpointer writes and reads", r"RedisCheckpointSaver\.\w+ \(adapters/_checkpointer\.py"),
    ("workflow record reads (HGETALL + verify)", r"WorkflowStore\.get \(adapters/_workflows\.py"),
    ("integrity (HMAC sign/verify, places)", r"\(adapters/_integrity\.py"),
    ("status writes of runs", r"StatusWriter\._flush \(server/engine/_status_writer\.py"),
    ("pub/sub follower (change notices)", r"follow \(adapters/_redis\.py"),
    ("Redis client (send, parse)", r"\(redis/"),
]  # fmt: skip
_FRAME = re.compile(r"\((?P<file>[^:)]*)")


def _package(frame: str) -> str:
    m = _FRAME.search(frame)
    path = m.group("file") if m else frame
    parts = path.split("/")
    if parts[0] in {"server", "adapters", "graphs"}:
        return f"ours: {parts[0]}/"
    if parts[0] in {"asyncio", "selectors.py", "uvloop"} or path.startswith("<frozen"):
        return "event loop (asyncio/uvloop)"
    return parts[0] if len(parts) > 1 else path


def summarise(raw: Path, label: str) -> str:
    """Markdown tables of one py-spy raw file (server process only)."""
    selfs: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        frames = stack.split(";")
        if not any(_SERVER in f for f in frames[:3]) or "engine-only" in stack:
            continue
        if any("importlib" in f for f in frames):
            continue
        n = int(n_text)
        total += n
        selfs[_package(frames[-1])] += n
        for name, pattern in _PARTS:
            if any(re.search(pattern, f) for f in frames):
                parts[name] += n
    if not total:
        return f"#### Profile — {label}\n\nno server samples in {raw}"
    lines = [f"#### Profile — {label}\n", f"{total} samples of the server process (100 Hz).\n",
             "| self time by package | share |", "|---|---:|"]  # fmt: skip
    for name, n in selfs.most_common(12):
        lines.append(f"| {name} | {100 * n / total:.1f} % |")
    lines += ["", "| inclusive (overlapping) | share |", "|---|---:|"]
    for name, _ in _PARTS:
        lines.append(f"| {name} | {100 * parts[name] / total:.1f} % |")
    return "\n".join(lines)


_DRIVER = """
import asyncio, sys, tempfile
from pathlib import Path
from adapters import EmbeddedRedis
from bench import frontdoor
with tempfile.TemporaryDirectory() as t:
    tmp = Path(t); (tmp / "fd").mkdir()
    with EmbeddedRedis(data_dir=tmp / "redis", transport="tcp") as s:
        r = asyncio.run(frontdoor.run(s.url, tmp / "fd", runs=300))
        print(f"benchmark 1 under the profiler: {r.runs_per_second:.1f} runs/s", file=sys.stderr)
"""


def _record(out: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "--subprocesses", "--rate", "100", "--format", "raw", "--output", str(out), "--",
           sys.executable, "-c", _DRIVER]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    """Profile (or summarise a raw file) and print or append the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--raw", type=Path, help="summarise this py-spy raw file instead of profiling")
    parser.add_argument("--label", default="benchmark 1, one process")
    parser.add_argument("--keep", type=Path, help="keep the raw samples here")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or args.keep or Path(tmp) / "raw.txt"
        if args.raw is None:
            _record(raw)
        body = summarise(raw, args.label)
    print(body)
    if args.write:
        append_section(f"profile: {args.label}", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
