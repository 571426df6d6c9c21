"""Benchmark 8: scale-out. Benchmarks 1 and 4 against single Redis and a 3-master Redis Cluster, with one
and with two orchestrator instances (`serve --http` processes sharing the Redis and the key prefix; the
driver spreads workflows over their front doors, each workflow followed where it was started).

Besides throughput and p99 it records CPU time of the servers, the stand-ins and Redis per agent
execution (per node execution for benchmark 1), from which BENCHMARKS.md works out on paper what more
cores buy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from adapters import EmbeddedCluster, EmbeddedRedis
from bench import concurrency
from bench.concurrency import _cpu, _process, one_process_server
from bench.frontdoor import NODES, WORKFLOW, RawMcp, _pct, _side_load, _wait_done

__all__ = ["ScaleoutResult", "run"]


@dataclass
class Throughput:
    """Benchmark 1 on one topology."""

    label: str
    runs: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    cpu_server: float = 0.0
    cpu_redis: float = 0.0

    @property
    def rps(self) -> float:
        """Completed runs per second."""
        return self.runs / self.seconds if self.seconds else 0.0

    def cpu_ms_per_node(self) -> tuple[float, float]:
        """CPU ms per node execution: servers, Redis."""
        n = (self.runs * NODES) or 1
        return self.cpu_server * 1000 / n, self.cpu_redis * 1000 / n


@dataclass
class ScaleoutResult:
    """Figures of benchmark 8."""

    b1: list[Throughput] = field(default_factory=list)
    b4: list[tuple[str, concurrency.ConcurrencyResult]] = field(default_factory=list)

    def headline(self) -> str:
        """Throughput of each topology against one instance on single Redis."""
        if not self.b1:
            return ""
        base = self.b1[0].rps or float("nan")
        parts = [f"{t.label} {t.rps / base:.2f}x" for t in self.b1[1:]]
        cluster = next(
            (t.rps / base for t in self.b1[1:] if "1 instance" in t.label and "cluster" in t.label), None
        )
        goal = (f" (one instance on the cluster: target >= 0.9x: {'met' if cluster >= 0.9 else 'NOT met'})"
                if cluster is not None else "")  # fmt: skip
        return (
            "- Scale-out (benchmark 1 against one instance on single Redis): " + ", ".join(parts) + goal + "."
        )

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        ms = 1000.0
        lines = [
            "### 8. Scale-out\n",
            f"Benchmark 1 ({NODES}-node graph, 100 workflows, 50 concurrent) and benchmark 4 "
            "(default-size productions against the stand-ins) on single Redis and on a 3-master Redis Cluster "
            "(EmbeddedCluster, same binary, same machine), with one and two `serve --http` instances sharing the "
            "key prefix; workflows are spread over the instances' front doors.\n",
            "| benchmark 1 | runs/s | vs 1 instance, single Redis | p50 | p99 | errors | server CPU per node "
            "execution | Redis CPU per node execution |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = self.b1[0].rps if self.b1 else 0.0
        for t in self.b1:
            srv, red = t.cpu_ms_per_node()
            lines.append(f"| {t.label} | {t.rps:.1f} | {t.rps / base if base else float('nan'):.2f}x | "
                         f"{_pct(t.latencies, 0.5) * ms:.0f} ms | {_pct(t.latencies, 0.99) * ms:.0f} ms | {t.errors} | "
                         f"{srv:.2f} ms | {red:.2f} ms |")  # fmt: skip
        if self.b4:
            lines += [
                "",
                "| benchmark 4 | productions | completed | failed | agent executions/min | production p50 | "
                "production p99 | peak RSS | Redis memory per production | CPU ms per agent execution "
                "(server / stand-ins / Redis) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for label, c in self.b4:
                cpu = c.cpu_ms_per_execution()
                per_min = c.agent_executions / (c.seconds / 60) if c.seconds else 0.0
                lines.append(
                    f"| {label} | {c.workflows} | {c.completed} | {c.failed} | {per_min:.0f} | "
                    f"{_pct(c.latencies, 0.5):.1f} s | {_pct(c.latencies, 0.99):.1f} s | {c.peak_rss_mb:.0f} MB | "
                    f"{c.redis_bytes_per_workflow / 1024:.0f} KiB | "
                    f"{cpu['server']:.1f} / {cpu['stand-ins']:.1f} / {cpu['redis']:.1f} |"
                )
                if c.errors:
                    lines.append(f"| | first error: {c.errors[0][:200]} | | | | | | | | |")
        lines += ["", self.paper()]
        return "\n".join(lines)

    def paper(self, host_cores: int = 16) -> str:
        """What more cores buy, worked out from this run's CPU per agent execution (benchmark 4)."""
        single = next((c for label, c in self.b4 if "single" in label and c.agent_executions), None)
        clustered = next((c for label, c in self.b4 if "cluster" in label and c.agent_executions), None)
        if single is None or clustered is None:
            return ""
        srv = single.cpu_ms_per_execution()["server"]
        red = single.cpu_ms_per_execution()["redis"]
        red_c = clustered.cpu_ms_per_execution()["redis"]
        per_core = 1000 / srv if srv else float("nan")
        cap_single = 1000 / red if red else float("inf")
        cap_cluster = 3000 / red_c if red_c else float("inf")  # each master carries a third
        host_single = min((host_cores - 1) * per_core, cap_single)
        host_cluster = min((host_cores - 3) * per_core, cap_cluster)
        per_prod = single.agent_executions / max(1, single.completed + single.cut_off)
        return (
            f"On paper, for a {host_cores}-core host (from this run's figures; the stand-ins' CPU is the outside "
            f"services', elsewhere in production): one server core runs {per_core:.0f} agent executions/s "
            f"({srv:.1f} ms each), so **one more core per instance (one more engine process) buys ~{per_core:.0f} "
            f"agent executions/s, ~{per_core / per_prod * 60:.0f} default-size productions per minute of agent "
            f"work**, as long as Redis keeps up. Single Redis (one core, {red:.2f} ms per execution) saturates at "
            f"~{cap_single:.0f}/s; the 3-master cluster ({red_c:.2f} ms per execution over its masters) at "
            f"~{cap_cluster:.0f}/s. {host_cores} cores: single Redis + {host_cores - 1} server cores -> "
            f"~{host_single:.0f}/s ({'Redis' if cap_single < (host_cores - 1) * per_core else 'server'}-bound); "
            f"cluster on 3 cores + {host_cores - 3} server cores -> ~{host_cluster:.0f}/s "
            f"({'Redis' if cap_cluster < (host_cores - 3) * per_core else 'server'}-bound)."
        )


class _Spread:
    """Benchmark 1's side over several front doors: workflow i goes to instance i mod n."""

    def __init__(self, clients: list[RawMcp]) -> None:
        self.clients, self.i = clients, 0

    async def one(self) -> bool:
        self.i += 1
        c = self.clients[self.i % len(self.clients)]
        r = await c.call_tool("start_workflow", {"project_id": "bench", "workflow": WORKFLOW})
        await _wait_done(c, r["workflow_id"])
        return True

    async def status(self) -> None:
        """Not probed in benchmark 8."""


async def _throughput(
    label: str, redis_url: str, redis_pids: list[int], tmp: Path, instances: int, runs: int
) -> Throughput:
    out = Throughput(label=label)
    prefix = f"s{uuid.uuid4().hex[:6]}"
    base_env = {**os.environ, "LOG_LEVEL": "warning", "LOG_FORMAT": "json", "REDIS_URL": redis_url,
                "KEY_PREFIX": prefix, "INTEGRITY_KEYS": f"bench-{prefix}-key"}  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        pids, clients = [], []
        for i in range(instances):
            env = {
                **base_env,
                "INSTANCE_ID": f"so-{i}",
                "LOG_FILE": str(tmp / f"scaleout-{label[:6]}-{i}.log"),
            }
            args = one_process_server(tmp / f"so{i}")
            pid, lines = await stack.enter_async_context(_process(args, env, "listening on"))
            pids.append(pid)
            url = next(ln for ln in lines if "listening on" in ln).split("listening on ")[1].split()[0]
            c = RawMcp(url)
            await stack.enter_async_context(c.http)
            clients.append(c)
        side = _Spread(clients)
        await _side_load(side, 20 * instances, 10)  # warm-up: connections, scripts, graph caches
        servers = [psutil.Process(p) for p in pids]
        redis_procs = [psutil.Process(p) for p in redis_pids]
        cpu0 = _cpu(servers), _cpu(redis_procs)
        t0 = time.perf_counter()
        out.latencies, out.errors = await _side_load(side, runs, 50)
        out.seconds = time.perf_counter() - t0
        out.runs = len(out.latencies)
        out.cpu_server, out.cpu_redis = _cpu(servers) - cpu0[0], _cpu(redis_procs) - cpu0[1]
    return out


async def run(
    single: EmbeddedRedis, cluster: EmbeddedCluster, tmp: Path, *, quick: bool = False
) -> ScaleoutResult:
    """Benchmark 8: benchmark 1 on four topologies, benchmark 4 on three."""
    out = ScaleoutResult()
    runs = 100
    productions = 10 if quick else 20
    latency = 0.5 if quick else 2.0
    single_pids = [single.pid] if single.pid else []
    cluster_pids = [n.pid for n in cluster.nodes if n.pid]
    tops = [
        ("1 instance, single Redis", single.url, single_pids, 1),
        ("2 instances, single Redis", single.url, single_pids, 2),
        ("1 instance, 3-master cluster", cluster.url, cluster_pids, 1),
        ("2 instances, 3-master cluster", cluster.url, cluster_pids, 2),
    ]
    for label, url, pids, n in tops:
        out.b1.append(await _throughput(label, url, pids, tmp, n, runs))

    async def cluster_memory() -> int:
        return await asyncio.to_thread(cluster.used_memory)

    for label, url, pids, n in [tops[0], tops[2], tops[3]]:
        on_cluster = url == cluster.url
        sub = tmp / f"b4-{len(out.b4)}"
        sub.mkdir()
        result = await concurrency.run(
            url, sub, workflows=productions, job_latency=latency, instances=n,
            memory=cluster_memory if on_cluster else None, redis_pids=pids,
            redis_label="cluster" if on_cluster else "Redis",
        )  # fmt: skip
        out.b4.append((label, result))
    return out
