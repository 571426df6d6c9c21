"""With real processes: a poison run quarantined after killing its engine process; SIGTERM under load.

The misbehaviour is injected by a `sitecustomize.py` written into the test's temporary folder and put on the
server processes' PYTHONPATH: the production code has no hook for it. It wraps `Engine._drive` so that a
workflow with the brief ``poison`` kills the process running it (``os._exit``), and one with the brief ``hog``
keeps the event loop of the instance named ``alpha`` busy for two minutes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest

from tests.server.test_processes import Services, call, server, services, until

pytestmark = pytest.mark.slow

__all__ = ["services"]  # the fixture, imported to be used here

HOOK = """
import asyncio
import os
import time

# Fault injection into the engine's subprocess: the one run method every workflow goes through.
import server.engine._run as _run

_drive = _run.WorkflowRun._drive


async def _misbehaving_drive(self, rec):
    if rec.brief == "poison":
        os._exit(70)
    if rec.brief == "hog" and self.deps.consumer == "alpha":
        await asyncio.sleep(0.5)  # the reply to start_workflow goes out first
        end = time.monotonic() + 120
        while time.monotonic() < end:
            pass
    return await _drive(self, rec)


_run.WorkflowRun._drive = _misbehaving_drive
"""


def _hooked(tmp: Path, services: Services, redis_url: str, key_prefix: str, **extra: str) -> dict[str, str]:
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOOK)
    return {
        **services.env,
        "REDIS_URL": redis_url,
        "KEY_PREFIX": key_prefix,
        "PYTHONPATH": str(hooks),
        **extra,
    }


async def _previews_in_flight(url: str, services: Services) -> list[str]:
    """Ten previews started through `url`, returned once five of their outside jobs are being worked on."""
    load = [
        (await call(url, "start_workflow", {"project_id": "p", "workflow": "preview", "brief": f"film {i}"}))[
            "workflow_id"
        ]
        for i in range(10)
    ]
    with anyio.fail_after(60):
        while sum(t["status"] == "processing" for t in services.tasks.tasks.values()) < 5:
            await anyio.sleep(0.05)
    return load


async def test_a_run_that_kills_its_engine_process_every_time_is_quarantined(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """`--engine-processes 1`: the child dies each time it runs the poison workflow and is replaced; after
    RUN_MAX_ATTEMPTS deaths the next claim quarantines the workflow instead of dying again; a healthy
    workflow started alongside completes."""
    env = _hooked(tmp_path, services, redis_url, key_prefix, RUN_MAX_ATTEMPTS="2")
    async with server("front", env, tmp_path, "--engine-processes", "1") as s:
        first_child = {c.pid for c in psutil.Process(s.proc.pid).children()}
        poison = (await call(s.url, "start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                        "brief": "poison"}))["workflow_id"]  # fmt: skip
        healthy = (await call(s.url, "start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                         "brief": "fine"}))["workflow_id"]  # fmt: skip
        st = await until(s.url, poison, lambda st: st["status"] in {"failed", "completed"}, limit=120)
        assert st["status"] == "failed"
        assert st["last_error"].startswith("quarantined: 2 runs of this workflow")
        assert "front-e0" in st["last_error"]
        done = await until(s.url, healthy, lambda st: st["status"] in {"failed", "completed"}, limit=60)
        assert done["status"] == "completed", done["last_error"]
        events = await redis_client.xrange(f"{key_prefix}:wf:{{{poison}}}:events")
        assert b"workflow.quarantined" in [f[b"what"] for _, f in events]
        audit = await redis_client.xrange(f"{key_prefix}:audit")
        assert [f for _, f in audit if f[b"what"] == b"run.quarantined" and poison.encode() in f[b"data"]]
        # the child died twice and was replaced each time
        children = {c.pid for c in psutil.Process(s.proc.pid).children()}
        assert not first_child & children
        async with httpx.AsyncClient(base_url=s.url) as http:
            engines = (await http.get("/readyz")).json()["engines"]
        assert [e["pid"] for e in engines] == list(children)
        assert engines[0]["claiming"] is True
        assert engines[0]["instance"] == "front-e0"
    log = (tmp_path / "front.log").read_text()  # the children log to their parent's LOG_FILE
    assert log.count("engine_process.died") >= 2
    assert "engine.run_quarantined" in log


async def _leased_by(redis_client: Any, key_prefix: str, wid: str) -> str:
    raw = await redis_client.get(f"{key_prefix}:lease:{{{wid}}}")
    return raw.decode() if raw else ""


async def test_sigterm_with_a_busy_event_loop_exits_within_the_grace_and_hands_the_runs_back(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """Alpha runs ten previews waiting on slow outside jobs, then a step that keeps its event loop busy.
    SIGTERM: the loop never gets to its graceful stop, yet alpha exits within the grace (plus a generous
    margin) and hands its runs back; beta completes every one of them."""
    services.tasks.latency = 3.0
    grace = 4.0
    env = _hooked(tmp_path, services, redis_url, key_prefix, SHUTDOWN_GRACE_SECONDS=str(grace))
    async with server("alpha", env, tmp_path) as a:
        load = await _previews_in_flight(a.url, services)
        hog = (await call(a.url, "start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                     "brief": "hog"}))["workflow_id"]  # fmt: skip
        with anyio.fail_after(30):
            while await _leased_by(redis_client, key_prefix, hog) != "alpha":
                await anyio.sleep(0.05)
        held = [w for w in load if await _leased_by(redis_client, key_prefix, w) == "alpha"]
        assert held  # alpha holds runs in flight when it is asked to stop
        async with server("beta", env, tmp_path) as b:
            t0 = time.monotonic()
            a.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(a.proc.wait(), grace + 30)
            took = time.monotonic() - t0
            assert code == 70  # the grace ran out: forced exit
            assert took < grace + 10, took
            finals = [await until(b.url, w, lambda st: st["status"] in {"completed", "failed"}, limit=90)
                      for w in [*load, hog]]  # fmt: skip
    assert [f["status"] for f in finals] == ["completed"] * 11, [f["last_error"] for f in finals]
    log = (tmp_path / "alpha.log").read_text()
    assert "shutdown.forced" in log
    assert "engine.runs_handed_back_on_exit" in log


async def test_a_second_sigterm_exits_at_once(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """With a long grace and a busy loop, a second SIGTERM ends the process without waiting for the grace."""
    grace = 120.0
    env = _hooked(tmp_path, services, redis_url, key_prefix, SHUTDOWN_GRACE_SECONDS=str(grace))
    async with server("alpha", env, tmp_path) as a:
        hog = (await call(a.url, "start_workflow", {"project_id": "p", "workflow": "diagnostic_linear",
                                                     "brief": "hog"}))["workflow_id"]  # fmt: skip
        with anyio.fail_after(30):
            while await _leased_by(redis_client, key_prefix, hog) != "alpha":
                await anyio.sleep(0.05)
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        await anyio.sleep(0.5)
        assert a.proc.returncode is None  # the first one starts the grace
        a.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(a.proc.wait(), 30)
        assert code == 70
        assert time.monotonic() - t0 < grace / 4
    assert "second_signal" in (tmp_path / "alpha.log").read_text()
    # handed back at exit: the run is queued again and its lease released for the next instance
    assert await _leased_by(redis_client, key_prefix, hog) == ""


async def test_sigterm_under_load_hands_the_runs_back_gracefully(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """Two instances share ten previews waiting on slow outside jobs; SIGTERM to one that holds runs: without
    a busy loop the stop is graceful (exit code 0) within the grace, and the other instance takes the runs
    handed back and completes every workflow."""
    services.tasks.latency = 3.0
    grace = 6.0
    env = {
        **services.env,
        "REDIS_URL": redis_url,
        "KEY_PREFIX": key_prefix,
        "SHUTDOWN_GRACE_SECONDS": str(grace),
    }
    async with server("alpha", env, tmp_path) as a, server("beta", env, tmp_path) as b:
        load = await _previews_in_flight(a.url, services)
        holders = [await _leased_by(redis_client, key_prefix, w) for w in load]
        victim, survivor = (a, b) if holders.count("alpha") >= holders.count("beta") else (b, a)
        assert victim.name in holders  # it holds runs in flight when it is asked to stop
        t0 = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(victim.proc.wait(), grace + 30)
        assert code == 0
        assert time.monotonic() - t0 < grace + 10
        finals = [await until(survivor.url, w, lambda st: st["status"] in {"completed", "failed"}, limit=90)
                  for w in load]  # fmt: skip
    assert [f["status"] for f in finals] == ["completed"] * 10, [f["last_error"] for f in finals]
    stopped = (tmp_path / f"{victim.name}.log").read_text()
    assert "engine.stopped" in stopped
    assert "shutdown.forced" not in stopped
    assert '"reason": "handed_back"' in (tmp_path / f"{survivor.name}.log").read_text()


async def test_sigterm_stops_a_stdio_server_whose_client_keeps_stdin_open(tmp_path: Path) -> None:
    """`serve` over stdio: SIGTERM stops it gracefully (exit 0) although the client never closes stdin."""
    import json
    import os
    import sys

    env = {**os.environ, "SHUTDOWN_GRACE_SECONDS": "20", "LOG_FILE": str(tmp_path / "stdio.log")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--data-dir", str(tmp_path / "data"), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
            + b"\n")  # fmt: skip
        await proc.stdin.drain()
        reply = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"serverInfo" in reply
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 40)
        assert code == 0
        assert time.monotonic() - t0 < 20  # well inside the grace: nothing waited for stdin
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "engine.stopped" in (tmp_path / "stdio.log").read_text()
