"""One resilience mechanism for every outside service: breaker, retries, timeout, bulkhead.

- A pybreaker circuit breaker per service. Its state is shared by every instance through Redis:
  a local state change is written to ``P:breaker:<service>`` and published on ``P:breakers``;
  every instance applies what the others publish. Only transient failures count against it.
- Retries with exponential backoff and full jitter, on transient errors only (connect errors,
  timeouts, 429, 5xx), never on 4xx, and never for a request whose outcome is unknown
  (`OutcomeUnknownError`: the caller reconciles first).
- A timeout on every call and a concurrency limit (bulkhead) per service.
- While a breaker is open, `call` waits for it to half-open instead of failing, and says so
  through `on_wait`, so a workflow can show why it waits.

`set_testing(True)` turns every backoff and wait into a zero sleep for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pybreaker
import structlog

from adapters import tracing
from adapters._cpu_gate import outside
from adapters._redis import AnyRedis, follow
from adapters.errors import CircuitOpenError, OutcomeUnknownError, TransientError

__all__ = ["RetryPolicy", "ServiceGuard", "SharedBreakers", "set_testing"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_TESTING = False


def set_testing(on: bool) -> None:
    """Make backoffs and breaker waits instant (tests)."""
    global _TESTING  # noqa: PLW0603 - a process-wide switch, like stamina.set_testing
    _TESTING = on


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(0 if _TESTING else seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    max_attempts: int = 4
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number `attempt` (1-based)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))  # noqa: S311


class _Publish(pybreaker.CircuitBreakerListener):
    def __init__(self, board: SharedBreakers) -> None:
        self.board = board

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = str(cb.name)
        if self.board.applying_remote == name:
            return
        state = new_state.name if new_state is not None else "closed"
        old = getattr(old_state, "name", None)
        if old == state:  # pybreaker re-enters the state it is in (a failure while open): nothing changed
            return
        log.warning("breaker.state_changed", service=name, old=old, new=state)
        self.board.schedule_publish(name, state)


class SharedBreakers:
    """The breakers of this instance, kept in step with every other instance through Redis.

    Args:
        redis: client used for the shared state (None keeps breakers local, e.g. in unit tests).
        prefix: key prefix of the deployment.
        instance: this instance's name, recorded with each change.
    """

    def __init__(self, redis: AnyRedis | None, *, prefix: str = "mo", instance: str = "") -> None:
        self.redis: Any = redis
        self.prefix = prefix
        self.instance = instance
        self.breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self.applying_remote: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None

    @property
    def channel(self) -> str:
        """Pub/sub channel of breaker changes."""
        return f"{self.prefix}:breakers"

    def key(self, name: str) -> str:
        """Hash holding a breaker's shared state."""
        return f"{self.prefix}:breaker:{name}"

    def breaker(
        self, name: str, *, fail_max: int = 5, reset_timeout: float = 30.0
    ) -> pybreaker.CircuitBreaker:
        """The breaker of service `name` (created on first use)."""
        if name not in self.breakers:
            self.breakers[name] = pybreaker.CircuitBreaker(
                fail_max=fail_max,
                reset_timeout=reset_timeout,
                name=name,
                exclude=[lambda exc: not isinstance(exc, TransientError | TimeoutError)],
                listeners=[_Publish(self)],
                throw_new_error_on_trip=False,
            )
        return self.breakers[name]

    def states(self) -> dict[str, str]:
        """Every breaker's current state on this instance: closed | open | half-open."""
        return {name: str(cb.current_state) for name, cb in self.breakers.items()}

    def schedule_publish(self, name: str, state: str) -> None:
        """Write and announce a local state change (from pybreaker's sync listener)."""
        if self.redis is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish(name, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, name: str, state: str) -> None:
        payload = json.dumps({"service": name, "state": state, "at": time.time(), "by": self.instance})
        try:
            # Write, then announce: PUBLISH names no key, so a cluster pipeline has no node to give it to.
            await self.redis.hset(
                self.key(name), mapping={"state": state, "at": str(time.time()), "by": self.instance}
            )
            await self.redis.publish(self.channel, payload)
        except Exception:
            log.exception("breaker.publish_failed", service=name)

    def apply(self, name: str, state: str) -> None:
        """Bring the local breaker to a state another instance announced."""
        cb = self.breaker(name)
        if str(cb.current_state) == state:
            return
        self.applying_remote = name
        try:
            if state == "open":
                cb.open()
            elif state == "closed":
                cb.close()
            # half-open is a local probe; every instance makes its own after reset_timeout
        finally:
            self.applying_remote = None

    async def start(self) -> None:
        """Load the shared states and follow changes from other instances."""
        if self.redis is None:
            return
        for name in list(self.breakers):
            raw = await self.redis.hget(self.key(name), "state")
            if raw:
                self.apply(name, raw.decode() if isinstance(raw, bytes) else str(raw))
        self._listener = asyncio.create_task(
            follow(self.redis, self._on_message, channels=[self.channel], name="breakers")
        )

    async def load(self, name: str) -> None:
        """Adopt the shared state of one breaker (for breakers created after start)."""
        if self.redis is None:
            return
        raw = await self.redis.hget(self.key(name), "state")
        if raw:
            self.apply(name, raw.decode() if isinstance(raw, bytes) else str(raw))

    def _on_message(self, _channel: str, data: str) -> None:
        change = json.loads(data)
        if change.get("by") != self.instance:
            self.apply(str(change["service"]), str(change["state"]))

    async def stop(self) -> None:
        """Stop following other instances."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener


class ServiceGuard:
    """Calls to one outside service: breaker, retries, timeout and concurrency limit.

    Args:
        name: the service's name (breaker name, metrics label).
        board: where the service's breaker lives.
        retry: backoff policy for transient errors.
        timeout: seconds one attempt may take.
        concurrency: most calls in flight at once from this instance.
        max_open_wait: longest time `call` waits for an open breaker before giving up.
        probe: asks the service whether it is back (its health route); while the breaker is open it is asked
            every `probe_seconds`, and a yes half-opens the breaker at once instead of after `reset_timeout`.
    """

    def __init__(
        self,
        name: str,
        board: SharedBreakers,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int = 64,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        max_open_wait: float = 3600.0,
        probe: Callable[[], Awaitable[bool]] | None = None,
        probe_seconds: float = 2.0,
    ) -> None:
        self.name = name
        self.board = board
        self.breaker = board.breaker(name, fail_max=fail_max, reset_timeout=reset_timeout)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_open_wait = max_open_wait
        self._sem = asyncio.Semaphore(concurrency)
        self._probe = probe
        self._probe_seconds = probe_seconds
        self._probing = asyncio.Lock()
        self._probed_at = 0.0
        self.calls = 0
        self.failures = 0
        self.last_failure_at = 0.0  # monotonic time of the last transient failure (0: none)

    @property
    def state(self) -> str:
        """The breaker's state: closed | open | half-open."""
        return str(self.breaker.current_state)

    async def _once(self, fn: Callable[[], Awaitable[T]]) -> T:
        async with self._sem:
            self.calls += 1
            try:
                with self.breaker.calling():
                    try:
                        return await asyncio.wait_for(fn(), self.timeout)
                    except TimeoutError as exc:
                        msg = f"{self.name} did not answer within {self.timeout}s"
                        raise TransientError(msg) from exc
            except pybreaker.CircuitBreakerError as exc:
                msg = f"{self.name} circuit is open after repeated failures; not calling it for now"
                raise CircuitOpenError(msg) from exc
            except TransientError:
                self.failures += 1
                self.last_failure_at = time.monotonic()
                raise

    async def _probe_if_open(self) -> None:
        """Ask the service whether it is back (one caller at a time, at most every `probe_seconds`); a yes
        half-opens the breaker, so the next call is the trial."""
        if self._probe is None or self.state != "open":
            return
        async with self._probing:
            if self.state != "open" or time.monotonic() - self._probed_at < self._probe_seconds:
                return
            self._probed_at = time.monotonic()
            try:
                back = await asyncio.wait_for(self._probe(), self.timeout)
            except (TimeoutError, OSError):
                back = False
            if back and self.state == "open":
                log.info("breaker.probe_answered", service=self.name)
                self.breaker.half_open()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        on_wait: Callable[[str], Awaitable[None]] | None = None,
        operation: str = "call",
    ) -> T:
        """Run `fn` with retries; while the breaker is open, wait (announcing it) instead of failing.

        The run's CPU turn goes to another run while this waits on the service (`outside()`). The call is one
        span (``<service> <operation>``), its retries and breaker waits events of it.

        Raises:
            TransientError: still failing after every retry, or the breaker stayed open too long.
            OutcomeUnknownError: from `fn`, never retried (it may have taken effect).
            PermanentError, RecoverableError: from `fn`, never retried.
        """
        async with outside():
            with tracing.span(f"{self.name} {operation}", attributes={"peer.service": self.name}):
                return await self._call(fn, on_wait)

    async def _call(
        self, fn: Callable[[], Awaitable[T]], on_wait: Callable[[str], Awaitable[None]] | None
    ) -> T:
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            try:
                return await self._once(fn)
            except CircuitOpenError:
                if waited >= self.max_open_wait:
                    raise
                reason = f"waiting for {self.name}: circuit open after repeated failures"
                tracing.event("breaker.open_wait", mo_waited=waited)
                if on_wait is not None:
                    await on_wait(reason)
                pause = max(
                    0.05, min(self.breaker.reset_timeout, 5.0, self._probe_seconds if self._probe else 5.0)
                )
                await _sleep(pause)
                waited += pause
                attempt = 0
                await self._probe_if_open()
            except OutcomeUnknownError:
                raise
            except TransientError as exc:
                if attempt >= self.retry.max_attempts:
                    raise
                delay = self.retry.delay(attempt)
                tracing.event("retry", mo_attempt=attempt, mo_error=str(exc)[:200])
                log.info(
                    "resilience.retry_scheduled",
                    service=self.name,
                    attempt=attempt,
                    wait_for=round(delay, 3),
                    error=str(exc)[:200],
                )
                await _sleep(delay)
