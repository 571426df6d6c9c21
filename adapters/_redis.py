"""Connecting to Redis: a URL (redis://, rediss://, unix://, cluster) or the embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.errors import StoreUnavailableError

__all__ = [
    "AnyRedis",
    "ChannelHub",
    "Watchers",
    "connect_redis",
    "follow",
    "is_cluster_url",
    "open_redis",
    "translates_redis_errors",
]

log = structlog.get_logger(__name__)

AnyRedis = Redis | RedisCluster

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What "Redis cannot be reached right now" looks like from redis-py: the only failures translated into our
# tree (a wrong command or a script error is a bug, and stays what it is).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
_UNAVAILABLE = "Redis cannot be reached right now"

C = TypeVar("C", bound=type)


def _unavailable(exc: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"{_UNAVAILABLE} ({type(exc).__name__}: {str(exc)[:200]})")


def translates_redis_errors(cls: C) -> C:
    """Class decorator: the public async methods (and async generators) of a Redis-backed adapter raise
    `StoreUnavailableError` where redis-py raised a connection, timeout or loading error.

    This is the one place Redis failures enter the error tree: callers above the adapters catch
    `StoreUnavailableError`, never redis-py's exceptions.
    """
    for name, fn in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if inspect.iscoroutinefunction(fn):
            setattr(cls, name, _coroutine_boundary(fn))
        elif inspect.isasyncgenfunction(fn):
            setattr(cls, name, _generator_boundary(fn))
    return cls


def _coroutine_boundary(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except _UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    return call


def _generator_boundary(fn: Callable[..., AsyncGenerator[Any, None]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async with contextlib.aclosing(fn(*args, **kwargs)) as items:
                async for item in items:
                    yield item
        except _UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    return call


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://``/``rediss+cluster://`` URLs or a ``?cluster=true`` query."""
    parts = urlsplit(url)
    if parts.scheme in _CLUSTER_SCHEMES:
        return True
    return parse_qs(parts.query).get("cluster", ["false"])[0].lower() in {"1", "true", "yes"}


def connect_redis(url: str, *, max_connections: int = 4096, **kwargs: Any) -> AnyRedis:
    """An asyncio client for ``url``; a ``RedisCluster`` for cluster URLs.

    Responses stay bytes (``decode_responses=False``): checkpoints are binary. redis-py's pool fails a
    command ("Too many connections") rather than wait once `max_connections` are in use, so the cap is
    far above what a thousand workflows in flight need at once (Redis accepts 10,000 clients).
    """
    parts = urlsplit(url)
    if is_cluster_url(url):
        scheme = _CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("cluster="))
        plain = urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))
        return RedisCluster.from_url(plain, max_connections=max_connections, **kwargs)
    return Redis.from_url(url, max_connections=max_connections, **kwargs)


async def open_redis(url: str, **kwargs: Any) -> AnyRedis:
    """Like `connect_redis`, but ready to use: a cluster client has loaded its slot map.

    redis-py's cluster client initialises lazily, and many first commands issued concurrently
    race inside that initialisation (a connection used before it is connected), so initialise once
    before handing the client out.
    """
    client = connect_redis(url, **kwargs)
    if isinstance(client, RedisCluster):
        await client.initialize()
    else:
        await client.ping()
    return client


async def follow(
    redis: AnyRedis,
    on_message: Callable[[str, str], None],
    *,
    channels: Sequence[str] = (),
    patterns: Sequence[str] = (),
    name: str = "pubsub",
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Deliver every pub/sub message on `channels` and `patterns` as (channel, data) until cancelled.

    Reconnects after any failure (Redis restarting, a dropped connection); `on_message` must not raise
    for the follower to keep its place, and a raising callback is logged and skipped. `on_ready` is
    called each time Redis has confirmed every subscription (from then on no message is missed).
    """
    me = asyncio.current_task()
    while me is None or not me.cancelling():
        pubsub = redis.pubsub()
        try:
            if channels:
                await pubsub.subscribe(*channels)
            if patterns:
                await pubsub.psubscribe(*patterns)
            # get_message with a timeout rather than listen(): redis-py can swallow a cancellation that
            # arrives inside a blocking read, and the follower must still stop within a second.
            unconfirmed = len(channels) + len(patterns)
            while me is None or not me.cancelling():
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None and msg.get("type") in {"subscribe", "psubscribe"} and unconfirmed:
                    unconfirmed -= 1
                    if unconfirmed == 0 and on_ready is not None:
                        on_ready()
                if msg is None or msg.get("type") not in {"message", "pmessage"}:
                    continue
                channel, data = msg["channel"], msg["data"]
                try:
                    on_message(
                        channel.decode() if isinstance(channel, bytes) else str(channel),
                        data.decode() if isinstance(data, bytes) else str(data),
                    )
                except Exception:
                    log.exception("pubsub.handler_failed", follower=name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pubsub.follow_failed", follower=name)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
    raise asyncio.CancelledError


class Watchers:
    """Local waiters on pub/sub channels: each gets the messages of its channel in a queue."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[str]]] = {}

    @contextlib.contextmanager
    def watch(self, channel: str) -> Iterator[asyncio.Queue[str]]:
        """The messages published on `channel` while in the block."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.setdefault(channel, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._queues.get(channel)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[channel]

    def deliver(self, channel: str, data: str) -> None:
        """Hand a message to the waiters on its channel."""
        for queue in self._queues.get(channel, ()):
            queue.put_nowait(data)


class ChannelHub(Watchers):
    """One pub/sub connection serving every local waiter on the channels it follows.

    Waiting on a channel costs a queue, not a Redis connection and a SUBSCRIBE round trip each time.
    Messages go to `on_message`, which by default hands them to the waiters on their channel.

    Args:
        redis: the client.
        name: the follower's name in logs.
        patterns: pattern subscriptions, e.g. ``P:job:*``.
        channels: plain subscriptions.
    """

    def __init__(
        self, redis: AnyRedis, name: str, *, patterns: Sequence[str] = (), channels: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.redis: Any = redis
        self._name = name
        self._patterns = list(patterns)
        self._channels = list(channels)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_message(self, channel: str, data: str) -> None:
        """Handle one message (override to route differently)."""
        self.deliver(channel, data)

    async def start(self, ready_timeout: float = 10.0) -> None:
        """Start following; returns once Redis confirmed the subscriptions (or after the timeout)."""
        self._task = asyncio.create_task(
            follow(self.redis, self.on_message, channels=self._channels, patterns=self._patterns, name=self._name,
                   on_ready=self._ready.set)
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), ready_timeout)

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
