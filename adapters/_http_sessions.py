"""Streamable HTTP sessions of handshake-era MCP clients, kept in Redis so that any instance serves them.

The HTTP transport stays stateless for every request; a session only says who opened it and which
resources it subscribed to, so that the instance holding its standalone GET stream (whichever it is)
knows what to send there. Keys (one hash tag per session, Redis Cluster safe)::

    P:http-session:{<sid>}        hash: owner (the key name that opened it), created
    P:http-session:{<sid>}:uris   set of subscribed resource URIs

Both expire `ttl` seconds after their last use. A change of a session's subscriptions (or its end) is
announced on the notices channel so that GET streams on every instance re-read them.
"""

from __future__ import annotations

import json
import secrets
import time

from adapters._redis import AnyRedis, translates_redis_errors

__all__ = ["HttpSessions"]


@translates_redis_errors
class HttpSessions:
    """Sessions of handshake-era Streamable HTTP clients.

    Args:
        redis: the client.
        prefix: the deployment's key prefix.
        notices: the pub/sub channel announcing a session's changes (``{"kind": "http_session", "sid"}``).
        ttl: seconds a session lives after its last use.
    """

    def __init__(self, redis: AnyRedis, prefix: str, notices: str, ttl: int = 3600) -> None:
        self.client = redis
        self.prefix = prefix
        self.notices = notices
        self.ttl = ttl

    def _key(self, sid: str) -> str:
        return f"{self.prefix}:http-session:{{{sid}}}"

    async def open(self, owner: str) -> str:
        """A new session of `owner` (the caller's key name; "" when the port authenticates nobody)."""
        sid = secrets.token_urlsafe(24)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._key(sid), mapping={"owner": owner, "created": str(time.time())})
        pipe.expire(self._key(sid), self.ttl)
        await pipe.execute()
        return sid

    async def owner(self, sid: str) -> str | None:
        """Who opened the session (None when unknown or expired); using it keeps it alive."""
        if not sid or len(sid) > 100:
            return None
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self._key(sid), "owner")
        pipe.expire(self._key(sid), self.ttl)
        pipe.expire(f"{self._key(sid)}:uris", self.ttl)
        found, *_ = await pipe.execute()
        if found is None:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)

    async def subscribe(self, sid: str, uri: str) -> None:
        """Add a resource to the session's subscriptions."""
        await self._change(sid, add=uri)

    async def unsubscribe(self, sid: str, uri: str) -> None:
        """Remove a resource from the session's subscriptions."""
        await self._change(sid, remove=uri)

    async def uris(self, sid: str) -> set[str]:
        """The resources the session subscribed to."""
        members = await self.client.smembers(f"{self._key(sid)}:uris")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def close(self, sid: str) -> None:
        """End the session (its GET streams end too)."""
        await self.client.delete(self._key(sid), f"{self._key(sid)}:uris")
        await self._announce(sid)

    async def _change(self, sid: str, *, add: str = "", remove: str = "") -> None:
        uris = f"{self._key(sid)}:uris"
        pipe = self.client.pipeline(transaction=True)
        if add:
            pipe.sadd(uris, add)
        if remove:
            pipe.srem(uris, remove)
        pipe.expire(uris, self.ttl)
        await pipe.execute()
        await self._announce(sid)

    async def _announce(self, sid: str) -> None:
        await self.client.publish(self.notices, json.dumps({"kind": "http_session", "sid": sid}))
