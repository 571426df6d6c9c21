"""The checkpointer on a real 3-master Redis Cluster started from the same binary on loopback ports."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from adapters import EmbeddedCluster, RedisCheckpointSaver, open_redis


@pytest.fixture
def cluster_url(cluster: EmbeddedCluster) -> str:
    """The session cluster's URL."""
    return cluster.url


class _S(TypedDict):
    n: int


def _graph(saver: RedisCheckpointSaver) -> Any:
    builder = StateGraph(_S)
    for i in range(5):
        builder.add_node(f"s{i}", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "s0")
    for i in range(4):
        builder.add_edge(f"s{i}", f"s{i + 1}")
    builder.add_edge("s4", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.slow
async def test_hundred_concurrent_threads_checkpoint_through_a_cluster(cluster_url: str) -> None:
    """100 graphs run concurrently on a 3-master cluster; every thread's checkpoints read back whole."""
    client = await open_redis(cluster_url)
    try:
        saver = RedisCheckpointSaver(client, prefix="clu")
        graph = _graph(saver)
        tids = [f"wf-{i}" for i in range(100)]
        results = await asyncio.gather(
            *(graph.ainvoke({"n": 0}, {"configurable": {"thread_id": t}}, durability="sync") for t in tids)
        )
        assert all(r == {"n": 5} for r in results)
        for t in tids:
            history = [c async for c in saver.alist({"configurable": {"thread_id": t}})]
            assert len(history) == 7  # input + 5 steps + start
            assert history[0].checkpoint["channel_values"] == {"n": 5}
        # threads really are spread over the three masters
        owners = {client.get_node_from_key(f"clu:{{{t}}}:ns").port for t in tids}  # type: ignore[union-attr]
        assert len(owners) == 3
        listed = [c async for c in saver.alist(None, limit=5)]
        assert len(listed) == 5
        await saver.adelete_thread(tids[0])
        assert await saver.aget_tuple({"configurable": {"thread_id": tids[0]}}) is None
    finally:
        await client.aclose()
