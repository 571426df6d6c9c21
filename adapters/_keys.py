"""API keys and the security audit, in Redis.

A key looks like ``mo_<key id>_<secret>``; Redis keeps only its SHA-256 (``P:apikey:<sha256>`` hashes and
the ``P:apikeys`` index of key ids). Keys are project-scoped, carry a role and an expiry; several may be
active for one client name, so rotation needs no downtime. Every key change, every failed or throttled
authentication and every denied call is appended to the security audit stream ``P:audit``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import structlog

from adapters._redis import AnyRedis, translates_redis_errors

__all__ = ["KEEP", "ROLES", "KeyInfo", "KeyStore", "SecurityAudit"]

log = structlog.get_logger(__name__)

# read < operate < decide < admin
ROLES = ("read", "operate", "decide", "admin")


class _Keep:
    """A quota left as it is."""


KEEP = _Keep()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@translates_redis_errors
class SecurityAudit:
    """The deployment's security events (``P:audit``, a capped stream).

    Args:
        redis: the shared Redis.
        prefix: deployment key prefix.
    """

    def __init__(self, redis: AnyRedis, prefix: str = "mo") -> None:
        self.redis: Any = redis
        self.key = f"{prefix}:audit"

    async def record(self, what: str, **data: Any) -> None:
        """Append a security event."""
        entry = {"what": what, "when": f"{time.time():.6f}", "data": json.dumps(data, default=str)}
        await self.redis.xadd(self.key, entry, maxlen=100_000, approximate=True)

    async def read(self, count: int = 1000) -> list[dict[str, Any]]:
        """The newest `count` security events, oldest first."""
        rows = await self.redis.xrevrange(self.key, count=count)
        out = []
        for entry_id, raw in reversed(rows):
            d = {_text(k): _text(v) for k, v in raw.items()}
            out.append({"id": _text(entry_id), "what": d.get("what"), "when": float(d.get("when", 0)),
                        "data": json.loads(d.get("data") or "{}")})  # fmt: skip
        return out


@dataclass(frozen=True)
class KeyInfo:
    """What is known of a key (never the key itself)."""

    key_id: str
    name: str
    projects: list[str]
    role: str
    created_at: float
    expires_at: float | None
    revoked: bool
    last_used: float | None
    # Quotas of the key's name (None: the deployment's QUOTA_KEY_* default; 0: no limit).
    max_in_flight: int | None = None
    starts_per_minute: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view, with the key's age in days."""
        return {**self.__dict__, "age_days": round((time.time() - self.created_at) / 86400, 2)}


@translates_redis_errors
class KeyStore:
    """API keys in Redis: ``P:apikey:<sha256>`` hashes, ``P:apikeys`` index of key ids.

    Args:
        redis: the shared Redis.
        prefix: deployment key prefix.
        max_age_days: no key lives longer (creation refuses more; verification refuses older keys).
        warn_days: keys expiring within this are reported (logs, /readyz).
        fail_limit: failed authentications per source address per minute before refusing it for a while.
        audit: where key changes and failed authentications are recorded (default: ``P:audit``).
    """

    def __init__(
        self,
        redis: AnyRedis,
        prefix: str = "mo",
        *,
        max_age_days: float = 90.0,
        warn_days: float = 7.0,
        fail_limit: int = 10,
        audit: SecurityAudit | None = None,
    ) -> None:
        self.redis: Any = redis
        self.prefix = prefix
        self._audit = audit or SecurityAudit(redis, prefix)
        self.max_age = max_age_days * 86400
        self.warn = warn_days * 86400
        self.fail_limit = fail_limit
        self._warned: dict[str, float] = {}

    def _key(self, digest: str) -> str:
        return f"{self.prefix}:apikey:{digest}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:apikeys"

    async def create(
        self,
        name: str,
        projects: list[str],
        role: str,
        ttl_days: float | None = None,
        *,
        max_in_flight: int | None = None,
        starts_per_minute: int | None = None,
    ) -> tuple[str, KeyInfo]:
        """A new key; the plaintext is returned once and never stored.

        Args:
            max_in_flight, starts_per_minute: the quotas of the key's name (None: the deployment's default for
                keys; 0: no limit).

        Raises:
            ValueError: unknown role, empty name, no projects or a negative quota.
        """
        _check_quotas(max_in_flight, starts_per_minute)
        if role not in ROLES:
            msg = f"role {role!r} is not one of {ROLES}"
            raise ValueError(msg)
        if not name or not projects:
            msg = "a key needs a name and at least one project (or '*')"
            raise ValueError(msg)
        if ttl_days is None or ttl_days * 86400 > self.max_age:
            if ttl_days is not None:
                msg = f"a key may live at most {self.max_age / 86400:g} days (asked {ttl_days:g})"
                raise ValueError(msg)
            ttl_days = self.max_age / 86400
        key_id = secrets.token_hex(4)
        plaintext = f"mo_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        info = KeyInfo(
            key_id, name, projects, role, now, now + ttl_days * 86400 if ttl_days else None, False, None,
            max_in_flight, starts_per_minute,
        )  # fmt: skip
        digest = _hash(plaintext)
        await self.redis.hset(self._key(digest), mapping={
            "key_id": key_id, "name": name, "projects": json.dumps(projects), "role": role,
            "created_at": str(now), "expires_at": str(info.expires_at or ""), "revoked": "0", "last_used": "",
            "max_in_flight": _opt(max_in_flight), "starts_per_minute": _opt(starts_per_minute),
        })  # fmt: skip
        await self.redis.hset(self._index, key_id, digest)
        await self._audit.record("key.created", key_id=key_id, name=name, role=role, projects=projects,
                                 max_in_flight=max_in_flight, starts_per_minute=starts_per_minute)  # fmt: skip
        return plaintext, info

    async def set_quota(
        self,
        name_or_id: str,
        *,
        max_in_flight: int | _Keep | None = KEEP,
        starts_per_minute: int | _Keep | None = KEEP,
    ) -> list[str]:
        """Change the quotas of a key by id, or of every key of a name (None: the deployment's default for
        keys; 0: no limit; `KEEP`: as it is); returns the key ids changed. Requests already authenticated
        keep the old values.

        Raises:
            ValueError: a negative quota.
        """
        given = {k: v for k, v in (("max_in_flight", max_in_flight), ("starts_per_minute", starts_per_minute))
                 if not isinstance(v, _Keep)}  # fmt: skip
        _check_quotas(*given.values())
        changed = []
        for info in await self.list_keys():
            if name_or_id in {info.key_id, info.name} and given:
                digest = await self.redis.hget(self._index, info.key_id)
                await self.redis.hset(
                    self._key(_text(digest)), mapping={k: _opt(v) for k, v in given.items()}
                )
                changed.append(info.key_id)
                await self._audit.record("key.quota_changed", key_id=info.key_id, name=info.name, **given)
        return changed

    @staticmethod
    def _info(raw: dict[Any, Any]) -> KeyInfo:
        d = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return KeyInfo(
            key_id=d["key_id"], name=d["name"], projects=json.loads(d["projects"]), role=d["role"],
            created_at=float(d["created_at"]), expires_at=float(d["expires_at"]) if d.get("expires_at") else None,
            revoked=d.get("revoked") == "1", last_used=float(d["last_used"]) if d.get("last_used") else None,
            max_in_flight=int(d["max_in_flight"]) if d.get("max_in_flight") else None,
            starts_per_minute=int(d["starts_per_minute"]) if d.get("starts_per_minute") else None,
        )  # fmt: skip

    async def list_keys(self) -> list[KeyInfo]:
        """Every key's metadata."""
        out = []
        for _, digest in (await self.redis.hgetall(self._index)).items():
            raw = await self.redis.hgetall(
                self._key(digest.decode() if isinstance(digest, bytes) else digest)
            )
            if raw:
                out.append(self._info(raw))
        return sorted(out, key=lambda k: (k.name, k.created_at))

    async def revoke(self, name_or_id: str) -> list[str]:
        """Revoke a key by id, or every key of a name; returns the key ids revoked."""
        revoked = []
        for info in await self.list_keys():
            if name_or_id in {info.key_id, info.name} and not info.revoked:
                digest = await self.redis.hget(self._index, info.key_id)
                await self.redis.hset(self._key(digest.decode()), "revoked", "1")
                revoked.append(info.key_id)
                await self._audit.record("key.revoked", key_id=info.key_id, name=info.name)
        return revoked

    def _fail_key(self, source: str) -> str:
        return f"{self.prefix}:authfail:{source}:{int(time.time() // 60)}"

    async def rotate(self, name: str, overlap_hours: float = 24.0) -> tuple[str, KeyInfo, list[str]]:
        """Issue a successor for the keys of `name`; the old ones stay valid for `overlap_hours`.

        Raises:
            ValueError: no live key has that name.
        """
        live = [k for k in await self.list_keys() if k.name == name and not k.revoked]
        if not live:
            msg = f"no live key named {name!r}"
            raise ValueError(msg)
        newest = max(live, key=lambda k: k.created_at)
        key, info = await self.create(name, newest.projects, newest.role, max_in_flight=newest.max_in_flight,
                                      starts_per_minute=newest.starts_per_minute)  # fmt: skip
        until = time.time() + overlap_hours * 3600
        retiring = []
        for old in live:
            if old.expires_at is None or old.expires_at > until:
                digest = await self.redis.hget(self._index, old.key_id)
                await self.redis.hset(self._key(digest.decode()), "expires_at", str(until))
            retiring.append(old.key_id)
        await self._audit.record(
            "key.rotated", name=name, successor=info.key_id, retiring=retiring, overlap_hours=overlap_hours
        )
        return key, info, retiring

    async def expiring(self) -> list[KeyInfo]:
        """Live keys that expire within the warning window."""
        soon = time.time() + self.warn
        return [k for k in await self.list_keys()
                if not k.revoked and k.expires_at is not None and time.time() < k.expires_at <= soon]  # fmt: skip

    async def verify(self, token: str, *, source: str = "") -> tuple[KeyInfo | None, str]:
        """What a live key is, or (None, reason) for a missing, wrong, expired or revoked key.

        A source with too many recent failures is refused without looking at the key.
        """
        if source and int(await self.redis.get(self._fail_key(source)) or 0) >= self.fail_limit:
            reason = "too many failed attempts from this address; try again in a minute"
            await self._audit.record("auth.throttled", source=source)
            return None, reason
        if not token:
            reason = "missing key"
        else:
            raw = await self.redis.hgetall(self._key(_hash(token)))
            if not raw:
                reason = "unknown key"
            else:
                info = self._info(raw)
                if info.revoked:
                    reason = "revoked key"
                elif info.expires_at is not None and info.expires_at < time.time():
                    reason = "expired key"
                elif time.time() - info.created_at > self.max_age:
                    reason = "key older than the maximum age"
                else:
                    now = time.time()
                    await self.redis.hset(self._key(_hash(token)), "last_used", str(now))
                    expiring = info.expires_at is not None and info.expires_at - now < self.warn
                    if expiring and now - self._warned.get(info.key_id, 0) > 3600:
                        self._warned[info.key_id] = now
                        log.warning("auth.key_expiring", key_id=info.key_id, name=info.name,
                                    days_left=round(((info.expires_at or now) - now) / 86400, 2))  # fmt: skip
                    return info, ""
        if source:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(self._fail_key(source))
            pipe.expire(self._fail_key(source), 120)
            await pipe.execute()
        await self._audit.record("auth.failed", reason=reason, source=source)
        log.warning("auth.failed", reason=reason, source=source)
        return None, reason


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _check_quotas(*values: int | None) -> None:
    if any(v is not None and v < 0 for v in values):
        msg = "a quota is a number of productions, 0 for no limit (or unset for the deployment's default)"
        raise ValueError(msg)
