"""API keys (hashed in Redis, project-scoped, with roles and expiry), the caller of a request, audit.

A key looks like ``mo_<key id>_<secret>``; Redis keeps only its SHA-256. Several keys may be active
for one client name, so rotation needs no downtime. Every key change and every denied call is
written to the security audit stream ``P:audit``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters import AnyRedis
from server._caller import current_caller
from server._service import Caller

__all__ = ["ROLES", "ApiKeyMiddleware", "KeyInfo", "KeyStore", "current_caller", "role_at_least"]

log = structlog.get_logger(__name__)

ROLES = ("read", "operate", "decide", "admin")


def role_at_least(role: str, needed: str) -> bool:
    """True if `role` ranks at or above `needed` (read < operate < decide < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return dict(self.__dict__)


class KeyStore:
    """API keys in Redis: ``P:apikey:<sha256>`` hashes, ``P:apikeys`` index of key ids."""

    def __init__(self, redis: AnyRedis, prefix: str = "mo") -> None:
        self.redis: Any = redis
        self.prefix = prefix

    def _key(self, digest: str) -> str:
        return f"{self.prefix}:apikey:{digest}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:apikeys"

    async def audit(self, what: str, **data: Any) -> None:
        """Append a security event to the audit stream."""
        entry = {"what": what, "when": f"{time.time():.6f}", "data": json.dumps(data, default=str)}
        await self.redis.xadd(f"{self.prefix}:audit", entry, maxlen=100_000, approximate=True)

    async def create(
        self, name: str, projects: list[str], role: str, ttl_days: float | None = None
    ) -> tuple[str, KeyInfo]:
        """A new key; the plaintext is returned once and never stored.

        Raises:
            ValueError: unknown role, empty name or no projects.
        """
        if role not in ROLES:
            msg = f"role {role!r} is not one of {ROLES}"
            raise ValueError(msg)
        if not name or not projects:
            msg = "a key needs a name and at least one project (or '*')"
            raise ValueError(msg)
        key_id = secrets.token_hex(4)
        plaintext = f"mo_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        info = KeyInfo(
            key_id, name, projects, role, now, now + ttl_days * 86400 if ttl_days else None, False, None
        )
        digest = _hash(plaintext)
        await self.redis.hset(self._key(digest), mapping={
            "key_id": key_id, "name": name, "projects": json.dumps(projects), "role": role,
            "created_at": str(now), "expires_at": str(info.expires_at or ""), "revoked": "0", "last_used": "",
        })  # fmt: skip
        await self.redis.hset(self._index, key_id, digest)
        await self.audit("key.created", key_id=key_id, name=name, role=role, projects=projects)
        return plaintext, info

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
                await self.audit("key.revoked", key_id=info.key_id, name=info.name)
        return revoked

    async def verify(self, token: str, *, source: str = "") -> tuple[Caller | None, str]:
        """The caller a key stands for, or (None, reason) for a missing, wrong, expired or revoked key."""
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
                else:
                    await self.redis.hset(self._key(_hash(token)), "last_used", str(time.time()))
                    return Caller(name=info.name, projects=tuple(info.projects), role=info.role), ""
        await self.audit("auth.failed", reason=reason, source=source)
        log.warning("auth.failed", reason=reason, source=source)
        return None, reason


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` on the MCP endpoint and sets the request's caller.

    Webhooks (their own per-job tokens), health and metrics stay open. WebSocket upgrades are
    checked by the /ws endpoint itself.
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, *, protected: tuple[str, ...] = ("/mcp",)) -> None:
        self.app = app
        self.keys = keys
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        source = request.client.host if request.client else ""
        caller, reason = await self.keys.verify(token, source=source)
        if caller is None:
            response = JSONResponse(
                {"error": "unauthorized", "message": f"{reason}: send Authorization: Bearer <api key>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="movie-orchestrator"'},
            )
            await response(scope, receive, send)
            return
        token_var = current_caller.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            current_caller.reset(token_var)
