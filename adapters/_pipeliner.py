"""Automatic pipelining: concurrent callers share round trips, for Lua script calls and single commands.

Under load many workflows checkpoint, read their memo and record their jobs at the same moment. Each
caller still awaits its own result, but calls queued in the same event-loop turn go out together in one
pipeline, so the per-command costs of the client (pool checkout, socket write, read wake-up) are paid once
per batch instead of once per call. With one caller alone, a call is one pipeline of one command: no added
latency. On Redis Cluster redis-py does not pipeline scripts, so script calls go out one by one there (and
single commands too: a cluster pipeline splits by node anyway).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from adapters._redis import AnyRedis

__all__ = ["ScriptPipeliner"]


@dataclass(slots=True)
class _Call:
    script: AsyncScript | None  # None: `args` is one plain command
    keys: list[Any]
    args: list[Any]
    future: asyncio.Future[Any]


class ScriptPipeliner:
    """Runs ``EVALSHA`` calls and single commands for many concurrent callers in shared pipelines.

    Args:
        client: the redis-py asyncio client (plain or cluster).
        max_batch: most calls in one pipeline.
        max_inflight: most pipelines in flight at once (each uses one pooled connection).
    """

    def __init__(self, client: AnyRedis, *, max_batch: int = 128, max_inflight: int = 4) -> None:
        self._client = client
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: deque[_Call] = deque()
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0  # round trips made, for tests and metrics
        # redis-py refuses EVALSHA inside cluster pipelines; a cluster client calls directly.
        self._direct = isinstance(client, RedisCluster)

    async def call(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """Run `script` with `keys` and `args`; returns its reply or raises its error."""
        return await self.submit(script, keys, args)

    def submit(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Awaitable[Any]:
        """Queue a call now and return what to await for its reply: calls submitted one after the other, then
        awaited, share one round trip."""
        if self._direct:
            return asyncio.ensure_future(script(keys=keys, args=args))
        return self._queued(_Call(script, keys, args, asyncio.get_running_loop().create_future()))

    async def command(self, *args: Any) -> Any:
        """Run one command (``"HGET", key, field``); returns its reply, parsed as redis-py parses it."""
        if self._direct:
            return await self._client.execute_command(*args)
        return await self._queued(_Call(None, [], list(args), asyncio.get_running_loop().create_future()))

    def _queued(self, call: _Call) -> asyncio.Future[Any]:
        self._queue.append(call)
        if not self._scheduled and self._inflight < self._max_inflight:
            # Wait for the rest of this loop turn so concurrent callers join the batch.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)
        return call.future

    def _kick(self) -> None:
        self._scheduled = False
        while self._queue and self._inflight < self._max_inflight:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            await self._send(batch)
        except BaseException as exc:
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
        finally:
            self._inflight -= 1
            if self._queue and not self._scheduled:
                self._kick()

    async def _send(self, batch: list[_Call]) -> None:
        self.pipelines += 1
        pipe = self._client.pipeline(transaction=False)
        for c in batch:
            if c.script is None:
                pipe.execute_command(*c.args)
            else:
                pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
        replies = await pipe.execute(raise_on_error=False)
        retry: list[_Call] = []
        for c, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                retry.append(c)
            elif c.future.done():
                continue
            elif isinstance(reply, Exception):
                c.future.set_exception(reply)
            else:
                c.future.set_result(reply)
        if retry:
            await self._load_and_run(retry)

    async def _load_and_run(self, retry: list[_Call]) -> None:
        """First use of scripts on this server (or after a restart or SCRIPT FLUSH): load them, then run."""
        scripts = {id(c.script): c.script for c in retry if c.script is not None}
        for script in scripts.values():
            await self._client.script_load(script.script)
        for c in retry:
            if c.future.done() or c.script is None:
                continue
            try:
                c.future.set_result(await c.script(keys=c.keys, args=c.args))
            except Exception as exc:
                c.future.set_exception(exc)
