"""Checkpointer throughput: a 10-node graph, 300 runs, 50 concurrent, durability="sync".

Compares InMemorySaver, RedisCheckpointSaver (ours) and langgraph-checkpoint-plainredis against
the same redis-server in one run; ours also signed as before (a serializer signing each value with
its type only) and as now (every record, blob and write signed with its place), to price the binding. Each saver runs `rounds` times, interleaved, and the median
counts, so a noisy neighbour hurts all three alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

from adapters import RedisCheckpointSaver, SignedSerializer, Signer, open_redis

__all__ = ["CheckpointerResult", "run"]

NODES = 10
_BENCH_KEY = b"bench-integrity-key-0123456789ab"
UNSIGNED = "RedisCheckpointSaver (ours)"
SIGNED_BEFORE = "ours, signed by type only (before)"
SIGNED_AFTER = "ours, signed and bound to place (after)"


class _State(TypedDict):
    n: int


def build_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """The benchmark graph: NODES nodes in a line, each adds one."""
    builder = StateGraph(_State)
    for i in range(NODES):
        builder.add_node(f"n{i}", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "n0")
    for i in range(NODES - 1):
        builder.add_edge(f"n{i}", f"n{i + 1}")
    builder.add_edge(f"n{NODES - 1}", END)
    return builder.compile(checkpointer=saver)


async def _drive(graph: Any, runs: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    tag = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with sem:
            out = await graph.ainvoke(
                {"n": 0}, {"configurable": {"thread_id": f"b{tag}-{i}"}}, durability="sync"
            )
            assert out == {"n": NODES}, out

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return runs / (time.perf_counter() - start)


@dataclass
class CheckpointerResult:
    """Median runs/s per saver, every round's figure, and the errors of savers that failed."""

    median: dict[str, float]
    rounds: dict[str, list[float]]
    errors: dict[str, str]

    def table(self) -> str:
        """Markdown table of the result."""
        mem = self.median.get("InMemorySaver", 0.0)
        plain = self.median.get("plainredis", 0.0)
        lines = [
            f"Checkpointer: {NODES}-node graph, 300 runs, 50 concurrent, durability=sync; runs/s, median "
            "of the rounds.",
            "",
            "| saver | runs/s | node steps/s | vs InMemorySaver | vs plainredis | rounds |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, value in self.median.items():
            vs_mem = f"{value / mem:.2f}x" if mem else "n/a"
            vs_plain = f"{value / plain:.2f}x" if plain else "n/a"
            rounds = ", ".join(f"{r:.0f}" for r in self.rounds[name])
            lines.append(f"| {name} | {value:.0f} | {value * NODES:.0f} | {vs_mem} | {vs_plain} | {rounds} |")
        for name, err in self.errors.items():
            lines.append(f"| {name} | failed: {err} | | | | |")
        ours = self.median.get(UNSIGNED)
        before, after = self.median.get(SIGNED_BEFORE), self.median.get(SIGNED_AFTER)
        if ours and before and after:
            lines.append(f"\nSigning cost: before {before / ours:.2f}x of unsigned, after {after / ours:.2f}x "
                         f"(after / before {after / before:.2f}x).")  # fmt: skip
        if ours and mem:
            verdict = "met" if ours >= 0.6 * mem else "NOT met"
            lines.append(f"\nTarget ours ≥ 60% of InMemorySaver: {verdict} ({ours / mem:.0%}).")
        if ours and plain:
            verdict = "met" if ours >= 2 * plain else "NOT met"
            lines.append(f"Target ours ≥ 2x plainredis: {verdict} ({ours / plain:.2f}x).")
        return "\n".join(lines)


async def run(
    redis_url: str, *, runs: int = 300, concurrency: int = 50, rounds: int = 3
) -> CheckpointerResult:
    """Measure every saver `rounds` times, interleaved, against the redis-server at `redis_url`."""
    client = await open_redis(redis_url)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    factories: dict[str, Callable[[], Awaitable[BaseCheckpointSaver[Any]]]] = {}

    async def memory() -> BaseCheckpointSaver[Any]:
        return InMemorySaver()

    async def ours() -> BaseCheckpointSaver[Any]:
        return RedisCheckpointSaver(client, prefix=prefix)

    async def signed_before() -> BaseCheckpointSaver[Any]:
        serde = SignedSerializer(JsonPlusSerializer(), Signer([_BENCH_KEY]))
        return RedisCheckpointSaver(client, prefix=prefix + "s1", serde=serde)

    async def signed_after() -> BaseCheckpointSaver[Any]:
        return RedisCheckpointSaver(
            client, prefix=prefix + "s2", signer=Signer([_BENCH_KEY], deployment=prefix)
        )

    factories["InMemorySaver"] = memory
    factories[UNSIGNED] = ours
    factories[SIGNED_BEFORE] = signed_before
    factories[SIGNED_AFTER] = signed_after
    try:
        from langgraph_checkpoint_plainredis import AsyncRedisSaver

        async def plain() -> BaseCheckpointSaver[Any]:
            saver: BaseCheckpointSaver[Any] = AsyncRedisSaver(url=redis_url, prefix=prefix + "p")
            return saver

        factories["plainredis"] = plain
    except ImportError:
        pass
    results: dict[str, list[float]] = {name: [] for name in factories}
    errors: dict[str, str] = {}
    # warm-up: script loading, connection pools, graph compilation caches
    for name, make in factories.items():
        try:
            await _drive(build_graph(await make()), 20, 10)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:200]
    for _ in range(rounds):
        for name, make in factories.items():
            if name in errors:
                continue
            try:
                results[name].append(await _drive(build_graph(await make()), runs, concurrency))
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"[:200]
    await client.aclose()
    median = {name: statistics.median(v) for name, v in results.items() if v}
    return CheckpointerResult(median=median, rounds=results, errors=errors)
