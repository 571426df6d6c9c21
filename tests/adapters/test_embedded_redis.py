"""The embedded redis-server launcher: persistence, locking, crash and restart, dying with its parent."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict
from uuid import uuid4

import pytest
from langgraph.graph import END, START, StateGraph

from adapters import DataDirLockedError, EmbeddedRedis, RedisCheckpointSaver, connect_redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        with Path(f"/proc/{pid}/stat").open() as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_second_instance_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    """A live server locks its data folder; a second launcher fails with a message naming it."""
    data = tmp_path / "d"
    with (
        EmbeddedRedis(data_dir=data),
        pytest.raises(DataDirLockedError, match="is locked by another live movie-orchestrator"),
    ):
        EmbeddedRedis(data_dir=data).start()
    # released on stop: a new one starts
    with EmbeddedRedis(data_dir=data) as again:
        assert again.pid is not None


def test_tcp_transport_binds_loopback(tmp_path: Path) -> None:
    """With transport=tcp the server listens on 127.0.0.1 on a free port."""
    with EmbeddedRedis(data_dir=tmp_path / "t", transport="tcp") as server:
        assert server.url.startswith("redis://127.0.0.1:")
        import redis

        client = redis.Redis.from_url(server.url)
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        client.close()


def test_server_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the owning process takes redis-server down too (no orphan holding the AOF)."""
    code = (
        "import sys, time; from pathlib import Path; from adapters import EmbeddedRedis;"
        f"s = EmbeddedRedis(data_dir=Path({str(tmp_path / 'p')!r})).start();"
        "print('PID', s.pid, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = ""
    while not line.startswith("PID "):
        line = child.stdout.readline()
        assert line, "child exited before starting redis"
    redis_pid = int(line.split()[1])
    assert _alive(redis_pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while _alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(redis_pid)


class _Count(TypedDict):
    n: int


def _counting_graph(saver: RedisCheckpointSaver, stop_at: int | None) -> Any:
    builder = StateGraph(_Count)
    names = [f"step{i}" for i in range(6)]

    def make(i: int) -> Any:
        def step(state: _Count) -> _Count:
            if stop_at is not None and i == stop_at:
                msg = "crash"
                raise RuntimeError(msg)
            return {"n": state["n"] + 1}

        return step

    for i, name in enumerate(names):
        builder.add_node(name, make(i))
    builder.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)
    return builder.compile(checkpointer=saver)


async def test_graph_resumes_after_redis_sigkill_and_restart(tmp_path: Path) -> None:
    """Checkpoints written before redis-server is SIGKILLed survive (AOF) and the graph resumes from them."""
    server = EmbeddedRedis(data_dir=tmp_path / "k").start()
    try:
        client = connect_redis(server.url)
        tid = str(uuid4())
        config: Any = {"configurable": {"thread_id": tid}}
        graph = _counting_graph(RedisCheckpointSaver(client), stop_at=4)
        with pytest.raises(RuntimeError, match="crash"):
            await graph.ainvoke({"n": 0}, config, durability="sync")
        # appendfsync everysec: give the fsync its second before pulling the plug.
        await asyncio.sleep(1.2)
        server.kill()
        await client.aclose()
        server.restart()
        client = connect_redis(server.url)
        resumed = _counting_graph(RedisCheckpointSaver(client), stop_at=None)
        state = await resumed.aget_state(config)
        assert state.values == {"n": 4}
        assert state.next == ("step4",)
        final = await resumed.ainvoke(None, config, durability="sync")
        assert final == {"n": 6}
        await client.aclose()
    finally:
        server.stop()
