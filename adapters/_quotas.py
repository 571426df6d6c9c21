"""Quotas per project and per API key in Redis: productions in flight and starts per minute.

Every key is in the hash-tag slot ``{q}`` (one node on Redis Cluster), so one script checks the project's
and the key's quotas and reserves both at once; a refused start writes nothing. ``P`` is the prefix:

    P:{q}:live:p:<project>   ZSET  workflow id -> reserved at     in flight, by project
    P:{q}:live:k:<key name>  ZSET  workflow id -> reserved at     in flight, by key (its successors share it)
    P:{q}:starts:p:<project> ZSET  workflow id -> started at      starts in the last window (expires)
    P:{q}:starts:k:<key>     ZSET
    P:{q}:wf:<wid>           HASH  p, k, at                       the reservation (deleted: released, once)
    P:{q}:counts             ZSET  "p:<project>" | "k:<key>" -> in flight (metrics, the board)
    P:{q}:reserved           ZSET  workflow id -> last checked    what the sweeper looks at
    P:{q}:queued             ZSET  workflow id -> queued at       positions in a project's queue
    P:{q}:sweep              STRING the sweeper's lock

A reservation is taken before a workflow is created and released when its status becomes terminal
(`WorkflowStore` reports every status it writes here); a crash between the two is healed by `sweep`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from adapters._pipeliner import ScriptPipeliner
from adapters._redis import AnyRedis, translates_redis_errors
from adapters.errors import QuotaExceededError

__all__ = ["Limits", "QuotaStore", "Tenancy", "TenantUsage"]

WINDOW = 60.0


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class Limits:
    """Quotas of one project or key (0: none), and where they were set, named in a refusal ("settings": the
    QUOTA_* setting of the quota refused)."""

    max_in_flight: int = 0
    starts_per_minute: int = 0
    source: str = ""


@dataclass(frozen=True)
class Tenancy:
    """Whose quotas a start counts against: its project's, and its key's when it came with one."""

    project: str
    project_limits: Limits
    key: str = ""
    key_limits: Limits = Limits()


@dataclass(frozen=True)
class TenantUsage:
    """What one project or key uses now."""

    scope: str
    tenant: str
    in_flight: int
    starts_last_minute: int


@translates_redis_errors
class QuotaStore:
    """The quota side of Redis.

    Args:
        client: redis-py asyncio client.
        prefix: the deployment's key prefix.
        pipeliner: shares round trips with the record updates that report statuses here.
    """

    def __init__(self, client: AnyRedis, prefix: str, *, pipeliner: ScriptPipeliner | None = None) -> None:
        self.client: Any = client
        self.prefix = prefix
        self._pipeliner = pipeliner or ScriptPipeliner(client)
        lua = resources.files("adapters") / "lua"
        self._reserve = client.register_script((lua / "quota_reserve.lua").read_text())
        self._status = client.register_script((lua / "quota_status.lua").read_text())

    def _k(self, suffix: str) -> str:
        return f"{self.prefix}:{{q}}:{suffix}"

    async def reserve(
        self, wid: str, who: Tenancy, *, counts_as_start: bool, action: str = "started"
    ) -> bool:
        """Take a place for `wid` under every quota that applies (in flight; and a start, when it is one).

        Returns:
            True when reserved now, False when it already was.

        Raises:
            QuotaExceededError: a quota is used up (the project's is checked first); nothing was written.
        """
        has_key = bool(who.key)
        p, k = who.project_limits, who.key_limits
        keys = [self._k(f"live:p:{who.project}"), self._k(f"live:k:{who.key}" if has_key else f"live:p:{who.project}"),
                self._k(f"starts:p:{who.project}"),
                self._k(f"starts:k:{who.key}" if has_key else f"starts:p:{who.project}"),
                self._k(f"wf:{wid}"), self._k("counts"), self._k("reserved"), self._k("queued")]  # fmt: skip
        args: list[str | int | float] = [wid, time.time(), WINDOW, p.max_in_flight, p.starts_per_minute, k.max_in_flight, k.starts_per_minute,
                int(has_key), who.project, who.key, int(counts_as_start)]  # fmt: skip
        reply = await self._reserve(keys=keys, args=args)
        if int(reply[0]) == 1:
            return _s(reply[1]) == "reserved"
        scope, quota, used, limit, after = (
            _s(reply[1]),
            _s(reply[2]),
            int(reply[3]),
            int(reply[4]),
            int(reply[5]),
        )
        tenant, source = (who.project, p.source) if scope == "project" else (who.key, k.source)
        if source == "settings":
            source = f"QUOTA_{scope.upper()}_{quota.upper()}"
        raise QuotaExceededError(scope, tenant, quota, used, limit, after / 1000 if after >= 0 else None,
                                 source=source, action=action)  # fmt: skip

    def status_changed(self, wid: str, queued: bool, ended: bool) -> Awaitable[Any]:
        """Report a status written for `wid` (queued, ended, or neither); submitted now, to be awaited (it shares a
        round trip with the record's update submitted beside it)."""
        what = "queued" if queued else "ended" if ended else "active"
        return self._pipeliner.submit(self._status, [self._k(f"wf:{wid}"), self._k("counts"), self._k("reserved"),
                                                     self._k("queued")], [wid, what, time.time(), self._k("live:")])  # fmt: skip

    async def release(self, wid: str) -> bool:
        """Give back `wid`'s place (exactly once, whoever calls); True when released by this call."""
        return bool(int(await self.status_changed(wid, queued=False, ended=True)))

    async def position(self, wid: str, project: str) -> tuple[int, int] | None:
        """Where a queued workflow stands in its project's queue: (1-based position, how many are queued), or
        None when it is not queued under its project's quota."""
        rows = await self.client.zinter(
            {self._k(f"live:p:{project}"): 0, self._k("queued"): 1}, withscores=True
        )
        order = sorted((float(score), _s(member)) for member, score in rows)
        members = [m for _, m in order]
        if wid not in members:
            return None
        return members.index(wid) + 1, len(members)

    async def usage(self, projects: list[str], keys: list[str]) -> list[TenantUsage]:
        """In flight and starts in the last minute of each project and key named."""
        since = f"({time.time() - WINDOW}"
        tenants = [("project", p, "p") for p in projects] + [("key", k, "k") for k in keys]
        pipe = self.client.pipeline(transaction=False)
        for _, name, kind in tenants:
            pipe.zcard(self._k(f"live:{kind}:{name}"))
            pipe.zcount(self._k(f"starts:{kind}:{name}"), since, "+inf")
        replies = await pipe.execute()
        return [TenantUsage(scope, name, int(replies[2 * i]), int(replies[2 * i + 1]))
                for i, (scope, name, _) in enumerate(tenants)]  # fmt: skip

    async def top(self, n: int = 20) -> list[tuple[str, str, int]]:
        """The projects and keys with the most in flight: (scope, tenant, in flight), most first."""
        rows = await self.client.zrevrange(self._k("counts"), 0, n - 1, withscores=True)
        out = []
        for member, score in rows:
            kind, _, name = _s(member).partition(":")
            out.append(("project" if kind == "p" else "key", name, int(score)))
        return out

    async def sweep(
        self,
        instance: str,
        statuses: Callable[[list[str]], Awaitable[dict[str, str | None]]],
        *,
        older_than: float = 60.0,
        batch: int = 500,
    ) -> int:
        """One pass of the sweeper (one instance at a time): reservations not looked at for `older_than`
        seconds whose workflow ended, or never came to exist, are released (a crash between the record and
        its reservation); the others are looked at again later. Returns how many were released.

        Args:
            instance: who sweeps (the lock's holder).
            statuses: the status of each workflow id (None: it has no record).
        """
        if not await self.client.set(
            self._k("sweep"), instance, nx=True, px=max(1000, int(older_than * 400))
        ):
            return 0
        now = time.time()
        wids = [_s(w) for w in await self.client.zrangebyscore(self._k("reserved"), "-inf", now - older_than,
                                                                start=0, num=batch)]  # fmt: skip
        if not wids:
            return 0
        seen = await statuses(wids)
        ended = [w for w in wids if seen.get(w) in {None, "completed", "failed", "cancelled"}]
        live = [w for w in wids if w not in ended]
        if live:
            await self.client.zadd(self._k("reserved"), dict.fromkeys(live, now), xx=True)
        released = 0
        for wid in ended:
            released += await self.release(wid)
        return released
