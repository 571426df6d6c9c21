"""Crash recovery with real processes: server instances SIGKILLed mid-step, redis-server SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import EmbeddedRedis
from server.sandbox import AutoMovieStandIn, BrainStandIn, TaskServiceStandIn, serve_app
from tests.server.conftest import structured

pytestmark = pytest.mark.slow


@dataclass
class Services:
    """The stand-ins, served from the test process so the test can read their counters."""

    tasks: TaskServiceStandIn
    env: dict[str, str]


@pytest.fixture
async def services(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    """Task Service (slow jobs: 1 s, or the seconds given by indirect parametrization), Brain and
    Auto-Movie stand-ins on loopback."""
    ts = TaskServiceStandIn(
        media_dir=tmp_path / "media", latency=getattr(request, "param", 1.0), webhook_delay=0.1
    )
    brain = BrainStandIn()
    am = AutoMovieStandIn(store_file=tmp_path / "am.json")
    async with (
        serve_app(ts.app()) as ts_url,
        serve_app(brain.app()) as brain_url,
        serve_app(am.app()) as am_url,
    ):
        ts.public_url = ts_url
        yield Services(ts, {
            "TASK_SERVICE_URL": ts_url, "TASK_SERVICE_API_KEY": ts.api_key,
            "BRAIN_URL": brain_url.replace("http://", "ws://"), "BRAIN_API_KEY": brain.api_key,
            "AUTO_MOVIE_URL": am_url, "AUTO_MOVIE_TOKEN": am.api_token, "PAYLOAD_EMAIL": am.email,
            "PAYLOAD_PASSWORD": am.password,
        })  # fmt: skip
    await ts.aclose()


@dataclass
class Server:
    """One `movie-orchestrator serve --http` process."""

    name: str
    proc: asyncio.subprocess.Process
    url: str

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.proc.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def server(name: str, env: dict[str, str], tmp: Path, *args: str) -> AsyncIterator[Server]:
    """Start a server process and wait until it listens; stop it at the end."""
    full = {**os.environ, **env, "INSTANCE_ID": name, "LOG_FILE": str(tmp / f"{name}.log"), "LOG_FORMAT": "json",
            "LEASE_SECONDS": "2", "TASK_POLL_SECONDS": "0.5"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--http", "127.0.0.1:0", "--no-auth", "--engine-processes", "0",
        "--data-dir", str(tmp / f"{name}-data"), *args, env=full, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    url = ""
    with anyio.fail_after(30):
        while not url:
            line = (await proc.stderr.readline()).decode()
            assert line, f"{name} exited before listening (see {tmp / f'{name}.log'})"
            if "listening on" in line:
                url = line.split("listening on ")[1].split("/mcp")[0]
    stderr_log = (tmp / f"{name}.stderr").open("wb")

    async def drain() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            stderr_log.write(chunk)
            stderr_log.flush()

    drainer = asyncio.create_task(drain())
    try:
        yield Server(name, proc, url)
    finally:
        drainer.cancel()
        stderr_log.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    """An MCP client over Streamable HTTP."""
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as c,
    ):
        yield c


async def call(url: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """One tool call on a fresh connection, retried while the server cannot reach Redis."""
    last: BaseException | None = None
    for _ in range(100):
        try:
            async with client(url) as c:
                result = await c.call_tool(tool, args)
            if not result.is_error:
                return structured(result)
            text = " ".join(getattr(x, "text", "") for x in result.content)
            if "unavailable" not in text:
                raise AssertionError(text)
        except (OSError, ConnectionError, httpx2.HTTPError, BaseExceptionGroup) as exc:
            last = exc
        await anyio.sleep(0.3)
    msg = f"{tool} on {url} kept failing: {last!r}"
    raise AssertionError(msg)


async def until(url: str, wid: str, pred: Any, limit: float = 90) -> dict[str, Any]:
    """Poll get_status until `pred` holds."""
    with anyio.fail_after(limit):
        while True:
            st = await call(url, "get_status", {"workflow_id": wid})
            if pred(st):
                return st
            await anyio.sleep(0.2)


class WebhookFront:
    """What a deployment of several instances puts before them for the Task Service's webhooks (a load
    balancer): one address that reaches an instance still alive. A webhook sent to an instance that has
    died is lost (the service tries 3 times in 3 s), and a completed job's result with it."""

    def __init__(self) -> None:
        self.instances: list[str] = []

    async def forward(self, request: Request) -> Response:
        body, query = await request.body(), request.url.query
        async with httpx2.AsyncClient(timeout=10) as http:
            for base in self.instances:
                with contextlib.suppress(httpx2.TransportError):
                    r = await http.post(f"{base}/webhooks/tasks?{query}", content=body,
                                        headers={"content-type": "application/json"})  # fmt: skip
                    return Response(r.content, r.status_code, media_type="application/json")
        return Response(status_code=503)


async def test_sigkill_of_the_running_instance_mid_step(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """Two instances on one Redis behind one webhook address; the one running a production is SIGKILLed
    mid-step; the other finishes it.

    The Task Service saw exactly one submit per step and both human decisions were honoured.
    """
    front = WebhookFront()
    async with serve_app(
        Starlette(routes=[Route("/webhooks/tasks", front.forward, methods=["POST"])])
    ) as front_url:
        env = {
            **services.env,
            "REDIS_URL": redis_url,
            "KEY_PREFIX": key_prefix,
            "WEBHOOK_BASE_URL": front_url,
        }
        await _kill_one_mid_step(services, env, front, tmp_path, redis_client, key_prefix)


async def _kill_one_mid_step(
    services: Services,
    env: dict[str, str],
    front: WebhookFront,
    tmp_path: Path,
    redis_client: Any,
    key_prefix: str,
) -> None:
    async with server("alpha", env, tmp_path) as a, server("beta", env, tmp_path) as b:
        front.instances = [a.url, b.url]
        start = await call(a.url, "start_workflow", {"project_id": "demo-project", "brief": "a map",
                                                     "options": {"scenes": 2, "characters": 2}})  # fmt: skip
        wid = start["workflow_id"]
        st = await until(a.url, wid, lambda s: s["status"] == "waiting_decision")
        decision = st["pending_decisions"][0]
        await call(b.url, "submit_decision", {"workflow_id": wid, "decision_id": decision["id"],
                                              "choice": decision["options"][1]})  # fmt: skip
        # wait until outside jobs of this production are in flight, then kill whoever holds it
        with anyio.fail_after(60):
            while not any(t["status"] == "processing" for t in services.tasks.tasks.values()):
                await anyio.sleep(0.05)
        holder = (await redis_client.get(f"{key_prefix}:lease:{{{wid}}}")).decode()
        victim, survivor = (a, b) if holder == "alpha" else (b, a)
        victim.kill()
        await victim.proc.wait()
        front.instances = [survivor.url]
        st = await until(
            survivor.url, wid, lambda s: s["status"] in {"waiting_decision", "failed"}, limit=120
        )
        assert st["status"] == "waiting_decision", st["last_error"]
        final = st["pending_decisions"][0]
        assert "final cut" in final["question"]
        await call(survivor.url, "submit_decision", {"workflow_id": wid, "decision_id": final["id"],
                                                     "choice": "approve"})  # fmt: skip
        done = await until(survivor.url, wid, lambda s: s["status"] in {"completed", "failed"})
    assert done["status"] == "completed", done["last_error"]
    assert done["result"]["concept"] == decision["options"][1]
    assert done["result"]["outcome"] == "distributed"
    submits = services.tasks.submits_by_key
    assert submits
    assert all(n == 1 for n in submits.values()), {k: n for k, n in submits.items() if n != 1}


async def test_redis_sigkill_and_restart_during_twenty_workflows(services: Services, tmp_path: Path) -> None:
    """redis-server is SIGKILLed while 20 productions run and restarted on its AOF: all 20 complete."""
    services.tasks.latency = 0.3
    redis = EmbeddedRedis(data_dir=tmp_path / "redis", transport="tcp").start()
    try:
        env = {**services.env, "REDIS_URL": redis.url, "KEY_PREFIX": "crash"}
        async with server("solo", env, tmp_path) as s:
            wids = [
                (await call(s.url, "start_workflow", {"project_id": "p", "brief": f"film {i}",
                                                      "options": {"scenes": 2, "characters": 1,
                                                                  "auto_approve": True}}))["workflow_id"]
                for i in range(20)
            ]  # fmt: skip
            await until(s.url, wids[-1], lambda st: st["status"] == "running" and st["percent"] > 10)
            await anyio.sleep(1.2)  # let appendfsync everysec write what has been acknowledged
            redis.kill()
            await anyio.sleep(1.5)
            redis.restart()
            finals = [await until(s.url, w, lambda st: st["status"] in {"completed", "failed"}, limit=180)
                      for w in wids]  # fmt: skip
        statuses = [f["status"] for f in finals]
        assert statuses == ["completed"] * 20, [f["last_error"] for f in finals if f["status"] != "completed"]
    finally:
        redis.stop()


async def test_engine_processes_run_the_workflows_and_a_killed_one_is_replaced(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path, redis_client: Any
) -> None:
    """`--engine-processes 2`: children named <instance>-e<i> run the workflows (the front runs none); one
    SIGKILLed while holding a production is replaced, and the production still completes."""
    import psutil

    env = {**services.env, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    async with server("front", env, tmp_path, "--engine-processes", "2") as s:
        children = {c.pid for c in psutil.Process(s.proc.pid).children()}
        assert len(children) == 2
        start = await call(s.url, "start_workflow", {"project_id": "demo-project",
                                                     "options": {"scenes": 2, "characters": 2, "auto_approve": True}})  # fmt: skip
        wid = start["workflow_id"]
        with anyio.fail_after(60):
            while not any(t["status"] == "processing" for t in services.tasks.tasks.values()):
                await anyio.sleep(0.05)
        holder = (await redis_client.get(f"{key_prefix}:lease:{{{wid}}}")).decode()
        assert holder in {"front-e0", "front-e1"}
        victim = next(
            c for c in psutil.Process(s.proc.pid).children() if c.environ().get("INSTANCE_ID") == holder
        )
        victim.kill()
        done = await until(s.url, wid, lambda st: st["status"] in {"completed", "failed"}, limit=120)
        assert done["status"] == "completed", done["last_error"]
        with anyio.fail_after(30):
            while len(psutil.Process(s.proc.pid).children()) < 2:  # the dead one is replaced
                await anyio.sleep(0.1)
        now = {c.pid for c in psutil.Process(s.proc.pid).children()}
        assert victim.pid not in now
        assert len(now) == 2
