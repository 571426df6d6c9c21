"""ServiceGuard and SharedBreakers: retries on transient errors only, breakers shared through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anyio
import pytest

from adapters import (
    AnyRedis,
    CircuitOpenError,
    PermanentError,
    RetryPolicy,
    ServiceGuard,
    SharedBreakers,
    TransientError,
    set_testing,
)


@pytest.fixture
def instant() -> Iterator[None]:
    """Backoffs sleep zero seconds."""
    set_testing(True)
    yield
    set_testing(False)


async def test_transient_errors_are_retried_then_succeed(instant: None) -> None:
    """Two transient failures then success: the caller sees only the success."""
    guard = ServiceGuard("svc", SharedBreakers(None), retry=RetryPolicy(max_attempts=4))
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise TransientError("503")
        return "ok"

    assert await guard.call(flaky) == "ok"
    assert attempts == 3


async def test_permanent_errors_are_not_retried(instant: None) -> None:
    """A 4xx-class failure goes straight to the caller and does not count against the breaker."""
    guard = ServiceGuard("svc", SharedBreakers(None), fail_max=1)
    attempts = 0

    async def bad_request() -> None:
        nonlocal attempts
        attempts += 1
        raise PermanentError("422")

    for _ in range(3):
        with pytest.raises(PermanentError):
            await guard.call(bad_request)
    assert attempts == 3
    assert guard.state == "closed"


async def test_timeouts_count_as_transient(instant: None) -> None:
    """A call that outlives its timeout becomes a TransientError after the retries."""
    guard = ServiceGuard("slow", SharedBreakers(None), timeout=0.01, retry=RetryPolicy(max_attempts=2))

    async def hang() -> None:
        await asyncio.sleep(5)

    with pytest.raises(TransientError, match="did not answer within"):
        await guard.call(hang)


async def test_breaker_opens_on_all_instances_then_half_opens_and_closes(
    redis_client: AnyRedis, key_prefix: str, instant: None
) -> None:
    """N failures on instance A open the breaker on A and B; after the reset timeout a probe closes both."""
    board_a = SharedBreakers(redis_client, prefix=key_prefix, instance="a")
    board_b = SharedBreakers(redis_client, prefix=key_prefix, instance="b")
    guard_a = ServiceGuard(
        "tasks", board_a, fail_max=3, reset_timeout=0.5, retry=RetryPolicy(max_attempts=1), max_open_wait=0
    )
    guard_b = ServiceGuard(
        "tasks", board_b, fail_max=3, reset_timeout=0.5, retry=RetryPolicy(max_attempts=1), max_open_wait=0
    )
    await board_a.start()
    await board_b.start()
    try:
        down = True
        calls = 0

        async def service() -> str:
            nonlocal calls
            calls += 1
            if down:
                raise TransientError("connect refused")
            return "up"

        for _ in range(3):
            with pytest.raises(TransientError):
                await guard_a.call(service)
        assert guard_a.state == "open"
        with anyio.fail_after(5):
            while guard_b.state != "open":
                await asyncio.sleep(0.01)
        state = await redis_client.hget(board_a.key("tasks"), "state")
        assert state == b"open"
        before = calls
        with pytest.raises(CircuitOpenError):
            await guard_b.call(service)
        assert calls == before, "an open breaker must not call the service"
        down = False
        await asyncio.sleep(0.6)  # reset_timeout passes: the next call is the half-open probe
        assert await guard_b.call(service) == "up"
        assert guard_b.state == "closed"
        with anyio.fail_after(5):
            while guard_a.state != "closed":
                await asyncio.sleep(0.01)
    finally:
        await board_a.stop()
        await board_b.stop()


async def test_open_breaker_makes_callers_wait_and_say_why(redis_client: AnyRedis, key_prefix: str) -> None:
    """With the breaker open, call() waits for the half-open probe instead of failing, reporting the wait."""
    board = SharedBreakers(None)
    guard = ServiceGuard("media", board, fail_max=1, reset_timeout=0.2, retry=RetryPolicy(max_attempts=1))
    healthy = False

    async def service() -> str:
        if not healthy:
            raise TransientError("down")
        return "done"

    with pytest.raises(TransientError):
        await guard.call(service)
    assert guard.state == "open"
    reasons: list[str] = []

    async def on_wait(reason: str) -> None:
        nonlocal healthy
        reasons.append(reason)
        healthy = True

    with anyio.fail_after(5):
        assert await guard.call(service, on_wait=on_wait) == "done"
    assert reasons
    assert "circuit open" in reasons[0]
