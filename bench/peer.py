"""The peer: LangGraph Agent Server (`langgraph dev`, in-memory runtime) serving the same 10-node graph.

It runs from its own virtual environment (`.venv-peer`, created on first use with `langgraph-cli[inmem]`),
so its dependency set never touches ours; it is driven with langgraph-sdk, the peer's own client.
Started with --no-browser --no-reload on 127.0.0.1 and with version checks, tracing and analytics off,
so it touches no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.frontdoor import FrontDoorResult, measure

__all__ = ["PeerSide", "run"]

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-peer"
PEER_PIN = "langgraph-cli[inmem]==0.4.40"

_GRAPH = """
from typing import TypedDict
from langgraph.graph import END, START, StateGraph

class S(TypedDict):
    n: int

async def step(s: S) -> S:  # async, as ours: a sync node costs a thread-pool hop per step in both
    return {"n": s["n"] + 1}

b = StateGraph(S)
for i in range(10):
    b.add_node(f"n{i}", step)
b.add_edge(START, "n0")
for i in range(9):
    b.add_edge(f"n{i}", f"n{i + 1}")
b.add_edge("n9", END)
graph = b.compile()
"""


def ensure_peer() -> Path:
    """The peer's `langgraph` executable, installing it into .venv-peer when missing."""
    exe = PEER_VENV / "bin" / "langgraph"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", PEER_PIN],
                       check=True)  # fmt: skip
    return exe


@contextlib.asynccontextmanager
async def peer_server(tmp: Path, port: int) -> AsyncIterator[str]:
    """`langgraph dev` serving the benchmark graph; yields its URL once /ok answers."""
    app = tmp / "peer-app"
    app.mkdir(exist_ok=True)
    (app / "graph.py").write_text(_GRAPH)
    (app / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"linear": "./graph.py:graph"}})
    )
    env = {**os.environ, "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false",
           "LANGGRAPH_CLI_NO_ANALYTICS": "1"}  # fmt: skip
    log = (tmp / "peer.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(ensure_peer()), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
        cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/ok")).status_code == 200:
                        break
                if proc.returncode is not None:
                    msg = f"the peer exited; see {tmp / 'peer.log'}"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)
        log.close()


class PeerSide:
    """The peer as benchmarks 1-3 drive it: `runs.wait` on a new thread per run; status is
    `threads.get_state` of one finished thread (what a caller polls)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.probe_thread = ""

    async def one(self) -> bool:
        thread = await self.client.threads.create()
        result = await self.client.runs.wait(thread["thread_id"], "linear", input={"n": 0})
        return bool(result == {"n": 10})

    async def status(self) -> None:
        if not self.probe_thread:
            thread = await self.client.threads.create()
            await self.client.runs.wait(thread["thread_id"], "linear", input={"n": 0})
            self.probe_thread = thread["thread_id"]
        await self.client.threads.get_state(self.probe_thread)


async def run(tmp: Path, port: int, *, runs: int = 300, concurrency: int = 50) -> FrontDoorResult:
    """Benchmarks 1-3 against the peer, through the same `measure()` as ours."""
    from langgraph_sdk import get_client

    out = FrontDoorResult(label="LangGraph Agent Server")
    async with peer_server(tmp, port) as url:
        side = PeerSide(get_client(url=url))
        await side.status()
        await measure(side, out, runs=runs, concurrency=concurrency)
    return out
