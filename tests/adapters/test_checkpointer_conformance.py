"""The upstream checkpoint conformance suite against RedisCheckpointSaver on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES

from adapters import AnyRedis, RedisCheckpointSaver
from tests.conftest import CONFORMANCE


async def test_conformance_suite_passes_every_declared_capability(
    redis_client: AnyRedis, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    """Every capability the saver overrides passes the langgraph-checkpoint-conformance suite."""

    @checkpointer_test(name="RedisCheckpointSaver")
    async def factory() -> AsyncIterator[RedisCheckpointSaver]:
        yield RedisCheckpointSaver(redis_client, prefix=key_prefix)

    report = await validate(factory)
    lines = [
        f"{name}: {r.tests_passed} passed, {r.tests_failed} failed"
        if r.detected
        else f"{name}: not implemented"
        for name, r in sorted(report.results.items())
    ]
    request.node.user_properties.extend((CONFORMANCE, line) for line in lines)
    for cap in BASE_CAPABILITIES:
        result = report.results[cap.value]
        assert result.detected, f"base capability {cap.value} not implemented"
    failures = {name: r.failures for name, r in report.results.items() if r.detected and not r.passed}
    assert not failures, failures
    assert report.passed_all_base()
    passed = sum(r.tests_passed for r in report.results.values())
    assert passed >= 58
    request.node.user_properties.append((CONFORMANCE, f"total: {passed} checks passed"))
