"""One real redis-server per test session, from the same launcher the service uses; a prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters import AnyRedis, EmbeddedCluster, EmbeddedRedis, connect_redis
from tests.traces import Spans

# The checkpoint conformance test reports its pass counts as user properties of its report under this name:
# they reach the terminal summary from a pytest-xdist worker too (a stash would stay in the worker).
CONFORMANCE = "checkpoint_conformance"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the checkpoint conformance report's pass counts at the end of the run."""
    lines = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", "") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == CONFORMANCE
    ]
    if lines:
        terminalreporter.section("langgraph-checkpoint-conformance: RedisCheckpointSaver")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The session's redis-server (embedded launcher, AOF on, unix socket)."""
    # pytest's tmp paths can exceed the 107-byte unix socket limit; keep this one short.
    data = Path(tmp_path_factory.mktemp("redis", numbered=True))
    server = EmbeddedRedis(data_dir=data)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A 3-master Redis Cluster for the session (started only by the tests that ask for it)."""
    with EmbeddedCluster(data_dir=Path(tmp_path_factory.mktemp("cluster"))) as c:
        yield c


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """URL of the session's redis-server."""
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[AnyRedis]:
    """A client of the session's server; the test's keys are deleted afterwards."""
    client = connect_redis(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracing on for this test, with the spans it made (the SDK's in-memory exporter)."""
    collected = Spans().start()
    yield collected
    collected.stop()
