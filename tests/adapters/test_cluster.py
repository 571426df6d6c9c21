"""The checkpointer on a real 3-master Redis Cluster started from the same binary on loopback ports."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
import redis
from langgraph.graph import END, START, StateGraph

from adapters import EmbeddedRedis, RedisCheckpointSaver, find_redis_server, open_redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three cluster-enabled redis-servers joined into one cluster; yields a cluster URL."""
    base = tmp_path_factory.mktemp("cluster")
    nodes = [
        EmbeddedRedis(
            data_dir=base / f"n{i}",
            transport="tcp",
            extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
            ],
        ).start()
        for i in range(3)
    ]  # fmt: skip
    try:
        cli = str(Path(find_redis_server()).with_name("redis-cli"))
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for n in nodes:
            client = redis.Redis(port=n.port)
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                assert time.monotonic() < deadline, "cluster did not become ok"
                time.sleep(0.1)
            client.close()
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
    finally:
        for n in nodes:
            n.stop()


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
async def test_hundred_concurrent_threads_checkpoint_through_a_cluster(cluster: str) -> None:
    """100 graphs run concurrently on a 3-master cluster; every thread's checkpoints read back whole."""
    client = await open_redis(cluster)
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
