"""RedisCheckpointSaver behaviour the conformance suite does not cover: keys, TTL, round trips, graphs."""

from __future__ import annotations

import asyncio
import operator
import os
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool, UnixDomainSocketConnection
from redis.crc import key_slot

from adapters import AnyRedis, EmbeddedRedis, RedisCheckpointSaver


class _CountingConnection(UnixDomainSocketConnection):
    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


async def _thread_keys(client: AnyRedis, prefix: str, thread_id: str) -> list[bytes]:
    return [k async for k in client.scan_iter(match=f"{prefix}:{{{thread_id}}}:*")]


async def _put_chain(saver: RedisCheckpointSaver, thread_id: str, n: int, ns: str = "") -> list[Any]:
    configs = []
    parent: RunnableConfig | None = None
    for i in range(n):
        config = generate_config(thread_id, checkpoint_ns=ns)
        if parent:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        cp = generate_checkpoint(channel_values={"n": i}, channel_versions={"n": i + 1})
        parent = await saver.aput(config, cp, {"source": "loop", "step": i}, {"n": i + 1})
        configs.append(parent)
        await saver.aput_writes(parent, [("n", i * 10), ("__error__", "boom")], task_id=f"t{i}")
    return configs


async def test_every_key_of_a_thread_shares_one_cluster_slot(redis_client: AnyRedis, key_prefix: str) -> None:
    """All keys of a thread (checkpoints, blobs, writes, namespaces) carry the {thread_id} hash tag."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    tid = f"weird:{{thread}}|{uuid4()}"
    await _put_chain(saver, tid, 3)
    await _put_chain(saver, tid, 2, ns="child:1")
    keys = await _thread_keys(redis_client, key_prefix, tid.replace("[", "\\["))
    all_keys = [k async for k in redis_client.scan_iter(match=f"{key_prefix}*")]
    assert len(keys) >= 6
    assert len({key_slot(k) for k in all_keys}) == 1


async def test_put_and_put_writes_take_one_round_trip_each(
    redis_server: EmbeddedRedis, key_prefix: str
) -> None:
    """aput and aput_writes each send exactly one request to Redis."""
    path = redis_server.url.removeprefix("unix://")
    client = Redis(connection_pool=ConnectionPool(connection_class=_CountingConnection, path=path))
    try:
        saver = RedisCheckpointSaver(client, prefix=key_prefix, ttl_seconds=60)
        tid = str(uuid4())
        # The first call of each script costs EVALSHA miss + SCRIPT LOAD; warm them up first.
        (warm,) = await _put_chain(saver, tid, 1)
        await saver.aget_tuple(warm)
        config = generate_config(tid)
        cp = generate_checkpoint(channel_values={"a": 1, "b": "x" * 100}, channel_versions={"a": 1, "b": 1})
        before = _CountingConnection.sends
        stored = await saver.aput(config, cp, {"source": "loop", "step": 1}, {"a": 1, "b": 1})
        assert _CountingConnection.sends - before == 1
        before = _CountingConnection.sends
        await saver.aput_writes(stored, [("a", 2), ("b", "y"), ("c", 3)], task_id="t")
        assert _CountingConnection.sends - before == 1
        before = _CountingConnection.sends
        assert await saver.aget_tuple(stored) is not None
        assert _CountingConnection.sends - before == 1
    finally:
        async for key in client.scan_iter(match=f"{key_prefix}*"):
            await client.delete(key)
        await client.aclose()


async def test_ttl_covers_every_key_and_is_refreshed_on_write(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """With a TTL, every key of the thread (writes included) expires; a new write refreshes all of them."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix, ttl_seconds=100)
    tid = str(uuid4())
    configs = await _put_chain(saver, tid, 2)
    await _put_chain(saver, tid, 1, ns="sub:1")
    keys = await _thread_keys(redis_client, key_prefix, tid)
    suffixes = {k.decode().rsplit("}:", 1)[1].split(":", 1)[0] for k in keys}
    assert {"ns", "ids", "cp", "bl", "wi", "wv"} <= suffixes
    for k in keys:
        assert 0 < await redis_client.ttl(k) <= 100
    for k in keys:
        await redis_client.expire(k, 5)
    await saver.aput_writes(configs[-1], [("n", 1)], task_id="late")
    for k in keys:
        assert await redis_client.ttl(k) > 5, k


async def test_without_ttl_keys_do_not_expire(redis_client: AnyRedis, key_prefix: str) -> None:
    """The default keeps checkpoints until the thread is deleted."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    tid = str(uuid4())
    await _put_chain(saver, tid, 1)
    for k in await _thread_keys(redis_client, key_prefix, tid):
        assert await redis_client.ttl(k) == -1
    await saver.adelete_thread(tid)
    assert await _thread_keys(redis_client, key_prefix, tid) == []


async def test_concurrent_writers_on_one_thread_lose_nothing(redis_client: AnyRedis, key_prefix: str) -> None:
    """200 concurrent aput_writes on one checkpoint all land, first write per (task, idx) wins."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    tid = str(uuid4())
    (stored,) = await _put_chain(saver, tid, 1)
    await asyncio.gather(
        *(saver.aput_writes(stored, [("ch", i), ("ch2", -i)], task_id=f"task-{i}") for i in range(200))
    )
    await asyncio.gather(*(saver.aput_writes(stored, [("ch", 999)], task_id=f"task-{i}") for i in range(200)))
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    ours = [w for w in tup.pending_writes or [] if w[0].startswith("task-")]
    assert len(ours) == 400
    assert all(v != 999 for _, c, v in ours if c == "ch")


def aes_serde() -> EncryptedSerializer:
    """LangGraph's EncryptedSerializer with AES-GCM and a fresh key."""
    key = AESGCM.generate_key(bit_length=128)

    class Cipher:
        def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
            nonce = os.urandom(12)
            return "aesgcm", nonce + AESGCM(key).encrypt(nonce, plaintext, None)

        def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
            assert ciphername == "aesgcm"
            return AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], None)

    return EncryptedSerializer(Cipher())


async def test_encrypted_serde_stores_no_plaintext(redis_client: AnyRedis, key_prefix: str) -> None:
    """With LangGraph's EncryptedSerializer plugged in, values round-trip and Redis holds no plaintext."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix, serde=aes_serde())
    tid = str(uuid4())
    secret = "the-villain-is-the-narrator"
    cp = generate_checkpoint(channel_values={"plot": secret}, channel_versions={"plot": 1})
    stored = await saver.aput(generate_config(tid), cp, {"source": "input", "step": -1}, {"plot": 1})
    await saver.aput_writes(stored, [("plot", secret + "-2")], task_id="t")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"plot": secret}
    assert tup.pending_writes == [("t", "plot", secret + "-2")]
    for k in await _thread_keys(redis_client, key_prefix, tid):
        dump = await redis_client.dump(k)
        assert dump is not None
        assert secret.encode() not in dump


class _State(TypedDict):
    topic: str
    scenes: Annotated[list[str], operator.add]
    approved: bool


def _production_graph(saver: RedisCheckpointSaver) -> Any:
    def plan(state: _State) -> list[Send]:
        return [Send("render", {"topic": f"{state['topic']}#{i}"}) for i in range(3)]

    def render(state: Any) -> dict[str, Any]:
        return {"scenes": [state["topic"]]}

    def approve(state: _State) -> dict[str, Any]:
        answer = interrupt({"question": "approve?", "scenes": state["scenes"]})
        return {"approved": answer == "yes"}

    builder = StateGraph(_State)
    builder.add_node("render", render)
    builder.add_node("approve", approve)
    builder.add_conditional_edges(START, plan, ["render"])
    builder.add_edge("render", "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=saver)


async def test_graph_with_fanout_and_interrupt_resumes_from_redis(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """A real graph fans out with Send, stops at an interrupt, and a new saver resumes it from Redis."""
    tid = str(uuid4())
    config: Any = {"configurable": {"thread_id": tid}}
    first = _production_graph(RedisCheckpointSaver(redis_client, prefix=key_prefix))
    out = await first.ainvoke({"topic": "heist", "scenes": [], "approved": False}, config, durability="sync")
    assert "__interrupt__" in out
    again = _production_graph(RedisCheckpointSaver(redis_client, prefix=key_prefix))
    state = await again.aget_state(config)
    assert state.next == ("approve",)
    assert sorted(state.values["scenes"]) == ["heist#0", "heist#1", "heist#2"]
    final = await again.ainvoke(Command(resume="yes"), config, durability="sync")
    assert final["approved"] is True
    history = [s async for s in again.aget_state_history(config)]
    assert len(history) >= 4
    assert history[0].values["approved"] is True


class _SubState(TypedDict):
    value: int


async def test_subgraph_checkpoints_live_in_their_namespace(redis_client: AnyRedis, key_prefix: str) -> None:
    """A subgraph interrupted mid-way stores checkpoints under its own namespace and resumes."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)

    def inner_step(state: _SubState) -> dict[str, int]:
        got = interrupt("more?")
        return {"value": state["value"] + int(got)}

    inner = StateGraph(_SubState)
    inner.add_node("inner_step", inner_step)
    inner.add_edge(START, "inner_step")
    outer = StateGraph(_SubState)
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "child")
    graph = outer.compile(checkpointer=saver)
    tid = str(uuid4())
    config: Any = {"configurable": {"thread_id": tid}}
    await graph.ainvoke({"value": 1}, config, durability="sync")
    members = await redis_client.smembers(f"{key_prefix}:{{{tid}}}:ns")
    namespaces = {m.decode() if isinstance(m, bytes) else m for m in members}
    assert "" in namespaces
    assert any(ns.startswith("child:") for ns in namespaces)
    result = await graph.ainvoke(Command(resume=41), config, durability="sync")
    assert result == {"value": 42}


async def test_list_filters_by_metadata_before_and_limit(redis_client: AnyRedis, key_prefix: str) -> None:
    """alist pages through more than one Lua page and applies filter, before and limit together."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    tid = str(uuid4())
    configs = await _put_chain(saver, tid, 70)
    ids = [c["configurable"]["checkpoint_id"] for c in configs]
    listed = [t.config["configurable"]["checkpoint_id"] async for t in saver.alist(generate_config(tid))]
    assert listed == ids[::-1]
    even = [t.metadata["step"] async for t in saver.alist(generate_config(tid), filter={"step": 64})]
    assert even == [64]
    before = [
        t.metadata["step"] async for t in saver.alist(generate_config(tid), before=configs[50], limit=3)
    ]
    assert before == [49, 48, 47]


async def test_sync_api_fails_clearly(redis_client: AnyRedis, key_prefix: str) -> None:
    """The saver is async only and says so instead of blocking the loop."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    with pytest.raises(NotImplementedError, match="async only"):
        saver.get_tuple(generate_config("x"))


def test_prefix_with_braces_is_rejected(redis_client: AnyRedis) -> None:
    """A prefix with hash-tag braces would break cluster slot placement, so it is refused."""
    with pytest.raises(ValueError, match="must not contain"):
        RedisCheckpointSaver(redis_client, prefix="a{b}")


async def test_prune_and_unknown_strategy(redis_client: AnyRedis, key_prefix: str) -> None:
    """keep_latest leaves one checkpoint and only its blobs; an unknown strategy is refused."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix)
    tid = str(uuid4())
    configs: Sequence[Any] = await _put_chain(saver, tid, 5)
    await saver.aprune([tid])
    listed = [t async for t in saver.alist(generate_config(tid))]
    assert [t.config for t in listed] == [configs[-1]]
    assert listed[0].checkpoint["channel_values"] == {"n": 4}
    assert await redis_client.hlen(f"{key_prefix}:{{{tid}}}:bl:") == 1
    with pytest.raises(ValueError, match="unknown prune strategy"):
        await saver.aprune([tid], strategy="shred")
