"""Benchmark 9: the cost model of one step, counted (not timed, so a busy machine does not move it).

One in-process orchestrator (engine, HTTP port, stand-ins with instant jobs) on a private Redis runs a batch of
workflows through the front door (start_workflow, then get_status waits, as JSON-RPC over Streamable HTTP), and
everything the server does for them is counted:

- Redis: round trips (each command or pipeline written to a connection), commands by name and bytes in and
  out (the server's own ``INFO commandstats`` and ``INFO stats``, before and after);
- signatures: MACs made (sign) and checked (verify);
- record reads (``WorkflowStore.get``), events written, change notices published;
- encodings: JSON (every ``json.dumps`` of the process) and msgpack (``ormsgpack.packb``: the checkpoints);
- MCP requests handled; and the process's CPU time.

Divided by node executions (the 10-node diagnostic graph: no agents, no outside calls) and by agent executions
(default-size movie productions, auto-approved, instant jobs) this is the cost of one step, before and after a
change (`python -m bench.costmodel`, or `make bench BENCH_ARGS="--only costmodel"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ormsgpack
from pydantic import SecretStr
from redis.asyncio.connection import Connection

from adapters import EmbeddedRedis, Signer, WorkflowStore, open_redis
from bench.concurrency import _process, _projects, _sandbox_env, sandbox_args
from bench.frontdoor import RawMcp
from graphs import DIAGNOSTIC_STEPS
from server import Settings, open_orchestrator

__all__ = ["CostModel", "run"]

MOVIE_OPTIONS = {"auto_approve": True}


@dataclass
class Counts:
    """What the server did for one batch."""

    round_trips: int = 0
    bytes_sent: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    net_in: int = 0
    net_out: int = 0
    signs: int = 0
    verifies: int = 0
    record_reads: int = 0
    json_encodes: int = 0
    msgpack_encodes: int = 0
    events: int = 0
    notices: int = 0
    mcp_requests: int = 0
    cpu_seconds: float = 0.0

    def per(self, n: int) -> dict[str, float]:
        """Each figure divided by `n`."""
        return {
            "Redis round trips": self.round_trips / n,
            "Redis commands": sum(self.commands.values()) / n,
            "bytes to Redis": self.net_in / n,
            "bytes from Redis": self.net_out / n,
            "MACs made (sign)": self.signs / n,
            "MACs checked (verify)": self.verifies / n,
            "record reads": self.record_reads / n,
            "JSON encodes": self.json_encodes / n,
            "msgpack encodes": self.msgpack_encodes / n,
            "events written": self.events / n,
            "change notices": self.notices / n,
            "MCP requests": self.mcp_requests / n,
            "server CPU (ms)": self.cpu_seconds * 1000 / n,
        }


@dataclass
class CostModel:
    """The counts of the two batches and what they are divided by."""

    label: str
    nodes: Counts
    node_executions: int
    movie: Counts
    agent_executions: int
    productions: int

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        per_node = self.nodes.per(self.node_executions)
        per_agent = self.movie.per(self.agent_executions)
        rows = [f"| {k} | {per_node[k]:.2f} | {per_agent[k]:.2f} |" for k in per_node]

        def top(counts: Counts, n: int) -> str:
            return ", ".join(f"{name} {k / n:.2f}" for name, k in counts.commands.most_common(8))

        return "\n".join([
            f"### 9. Cost of one step — {self.label}\n",
            f"Counted in one server process (engine, HTTP port; the stand-ins in their own process, instant jobs) "
            "on a private Redis: "
            f"{self.node_executions // DIAGNOSTIC_STEPS} diagnostic workflows ({self.node_executions} node "
            f"executions, no agents) and {self.productions} default-size movie productions, auto-approved "
            f"({self.agent_executions} agent executions), all through the front door.\n",
            "| per | node execution | agent execution |",
            "|---|---:|---:|",
            *rows,
            f"\nRedis commands (scripts' own included) per node execution, most frequent: "
            f"{top(self.nodes, self.node_executions)}; per agent execution: {top(self.movie, self.agent_executions)}.",
        ])  # fmt: skip


class _Probe:
    """Counters patched into the process (undone on exit)."""

    def __init__(self) -> None:
        self.counts = Counts()
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, owner: Any, name: str, count: Callable[..., None]) -> None:
        original = getattr(owner, name)

        if asyncio.iscoroutinefunction(original):

            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                count(*args, **kwargs)
                return await original(*args, **kwargs)

            setattr(owner, name, wrapped_async)
        else:

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                count(*args, **kwargs)
                return original(*args, **kwargs)

            setattr(owner, name, wrapped)
        self._undo.append(lambda: setattr(owner, name, original))

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Probe]:
        c = self.counts

        def sent(_conn: Any, command: Any, *_: Any, **__: Any) -> None:
            c.round_trips += 1
            c.bytes_sent += sum(len(p) for p in command) if isinstance(command, list) else len(command)

        def bump(attr: str) -> Callable[..., None]:
            def inc(*_: Any, **__: Any) -> None:
                setattr(c, attr, getattr(c, attr) + 1)

            return inc

        self._wrap(Connection, "send_packed_command", sent)
        self._wrap(Signer, "sign", bump("signs"))
        self._wrap(Signer, "verify", bump("verifies"))
        self._wrap(WorkflowStore, "get", bump("record_reads"))
        self._wrap(json, "dumps", bump("json_encodes"))
        self._wrap(ormsgpack, "packb", bump("msgpack_encodes"))
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()


async def _server_stats(url: str) -> tuple[Counter[str], int, int]:
    client = await open_redis(url)
    try:
        raw: Any = await client.info("commandstats")
        stats: Any = await client.info("stats")
    finally:
        await client.aclose()
    commands = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()})
    return commands, int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


async def _follow(
    c: RawMcp, workflow: str, options: dict[str, Any], i: int, projects: list[str]
) -> dict[str, Any]:
    st = await c.call_tool("start_workflow", {"project_id": projects[i % len(projects)], "workflow": workflow,
                                              "options": options, "idempotency_key": uuid.uuid4().hex})  # fmt: skip
    wid = st["workflow_id"]
    while True:
        st = await c.call_tool(
            "get_status",
            {"workflow_id": wid, "wait_seconds": 30, "until": ["completed", "failed", "cancelled"]},
        )
        if st["status"] in {"completed", "failed", "cancelled"}:
            if st["status"] != "completed":
                msg = f"{workflow} {wid} ended {st['status']}: {st.get('last_error')}"
                raise RuntimeError(msg)
            return st


@contextlib.asynccontextmanager
async def _counting(url: str, probe: _Probe, requests: Callable[[], int]) -> AsyncIterator[Counts]:
    """Count what happens in the block: the probe's counters, Redis's own, CPU time and MCP requests."""
    before = _server_stats(url)
    commands0, in0, out0 = await before
    c = probe.counts
    start = (
        c.round_trips,
        c.signs,
        c.verifies,
        c.record_reads,
        c.json_encodes,
        c.msgpack_encodes,
        requests(),
    )
    cpu0 = time.process_time()
    out = Counts()
    yield out
    out.cpu_seconds = time.process_time() - cpu0
    commands1, in1, out1 = await _server_stats(url)
    now = (c.round_trips, c.signs, c.verifies, c.record_reads, c.json_encodes, c.msgpack_encodes, requests())
    (out.round_trips, out.signs, out.verifies, out.record_reads, out.json_encodes, out.msgpack_encodes,
     out.mcp_requests) = (b - a for a, b in zip(start, now, strict=True))  # fmt: skip
    out.commands = commands1 - commands0
    out.net_in, out.net_out = in1 - in0, out1 - out0
    out.notices = out.commands.get("publish", 0)


async def run(workflows: int = 100, productions: int = 10, label: str = "this commit") -> CostModel:
    """Count `workflows` diagnostic runs and `productions` movie productions, each batch 10 at a time.

    The stand-ins run in a process of their own (instant jobs), so the CPU counted is the server's.
    """
    with tempfile.TemporaryDirectory(prefix="mo-cost-") as tmp_name, \
            EmbeddedRedis(data_dir=Path(tmp_name) / "redis", transport="tcp") as redis:  # fmt: skip
        tmp = Path(tmp_name)
        env = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
        # without the defects: the 6 s late webhook and failing video are the stand-in's waits and retries, not
        # the cost of a step (they doubled the CPU counted per agent execution)
        async with _process(sandbox_args(tmp, 0), env, "AUTO_MOVIE_URL=") as (_, lines):
            services = _sandbox_env(lines)
            projects = await _projects(services, 5)
            settings = Settings(
                redis_url=SecretStr(redis.url), key_prefix="cost", data_dir=tmp / "d", log_level="warning",
                task_poll_seconds=1.0, integrity_keys=SecretStr("cost-model-integrity-key"),
                task_service_url=services["TASK_SERVICE_URL"],
                task_service_api_key=SecretStr(services["TASK_SERVICE_API_KEY"]),
                brain_url=services["BRAIN_URL"], brain_api_key=SecretStr(services["BRAIN_API_KEY"]),
                auto_movie_url=services["AUTO_MOVIE_URL"], auto_movie_token=SecretStr(services["AUTO_MOVIE_TOKEN"]),
                payload_email=services["PAYLOAD_EMAIL"], payload_password=SecretStr(services["PAYLOAD_PASSWORD"]),
            )  # fmt: skip
            return await _count(settings, redis.url, projects, workflows, productions, label)


async def _count(
    settings: Settings, redis_url: str, projects: list[str], workflows: int, productions: int, label: str
) -> CostModel:
    probe = _Probe()
    async with open_orchestrator(settings, http=("127.0.0.1", 0), auth=False) as (orch, _):
        c = RawMcp(f"{orch.http_url}/mcp", max_connections=20)
        requests = lambda: c._id  # noqa: E731 - one request per call made by this client
        with probe.installed():
            async with c.http:
                await _batches(c, "diagnostic_linear", {}, 10, projects)  # warm up
                async with _counting(redis_url, probe, requests) as nodes:
                    ran = await _batches(c, "diagnostic_linear", {}, workflows, projects)
                nodes.events = await _events(orch.store, ran)
                async with _counting(redis_url, probe, requests) as movie:
                    done = await _batches(c, "movie_production", MOVIE_OPTIONS, productions, projects)
                movie.events = await _events(orch.store, done)
    agents = sum(int(st["result"].get("agent_executions", 0)) for st in done)
    return CostModel(label, nodes, workflows * DIAGNOSTIC_STEPS, movie, agents, productions)


async def _events(store: WorkflowStore, statuses: list[dict[str, Any]]) -> int:
    total = 0
    for st in statuses:
        total += len(await store.events(st["workflow_id"], count=100_000))
    return total


async def _batches(
    c: RawMcp, workflow: str, options: dict[str, Any], count: int, projects: list[str]
) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    for start in range(0, count, 10):
        batch = range(start, min(count, start + 10))
        done += await asyncio.gather(*(_follow(c, workflow, options, i, projects) for i in batch))
    return done


if __name__ == "__main__":
    import logging

    from server.telemetry import configure_logging

    configure_logging("json", "warning")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mcp").setLevel(logging.WARNING)
    result = asyncio.run(run())
    print(result.table())
    print(json.dumps({"nodes": result.nodes.per(result.node_executions),
                      "agents": result.movie.per(result.agent_executions)}, indent=1))  # fmt: skip
