"""ScriptPipeliner: concurrent script calls share pipelines, keep their own results and errors."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from adapters import AnyRedis, ScriptPipeliner

_ECHO_OR_FAIL = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
redis.call('INCR', KEYS[1])
return ARGV[1]
"""


async def test_each_caller_gets_its_own_reply_or_error(redis_client: AnyRedis, key_prefix: str) -> None:
    """500 concurrent calls: replies map back to their callers; one script error fails only its caller."""
    script = redis_client.register_script(_ECHO_OR_FAIL)
    pipeliner = ScriptPipeliner(redis_client, max_batch=64, max_inflight=2)
    key = f"{key_prefix}:count"
    args = [str(i) if i % 50 else "fail" for i in range(500)]
    replies = await asyncio.gather(
        *(pipeliner.call(script, [key], [a]) for a in args), return_exceptions=True
    )
    for a, reply in zip(args, replies, strict=True):
        if a == "fail":
            assert isinstance(reply, ResponseError)
            assert "asked to fail" in str(reply)
        else:
            assert reply == a.encode()
    assert int(await redis_client.get(key) or 0) == 490


async def test_recovers_when_the_server_forgot_its_scripts(redis_client: AnyRedis, key_prefix: str) -> None:
    """After SCRIPT FLUSH (as after a redis restart) calls load the script again and succeed."""
    script = redis_client.register_script(_ECHO_OR_FAIL)
    pipeliner = ScriptPipeliner(redis_client)
    key = f"{key_prefix}:n"
    assert await pipeliner.call(script, [key], ["a"]) == b"a"
    await redis_client.script_flush()
    replies = await asyncio.gather(*(pipeliner.call(script, [key], [str(i)]) for i in range(20)))
    assert replies == [str(i).encode() for i in range(20)]


async def test_connection_failure_reaches_every_caller(key_prefix: str) -> None:
    """When Redis cannot be reached, every waiting caller gets the connection error."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis(unix_socket_path=f"/tmp/{key_prefix}-nothing.sock", retry=Retry(NoBackoff(), 0))
    script = client.register_script(_ECHO_OR_FAIL)
    pipeliner = ScriptPipeliner(client)
    results = await asyncio.gather(
        *(pipeliner.call(script, ["k"], ["x"]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    with pytest.raises(RedisConnectionError):
        await pipeliner.call(script, ["k"], ["x"])
    await client.aclose()
