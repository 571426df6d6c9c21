"""Who is calling: a key's name, its projects and its role; and the caller of the current request."""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, field

from adapters import ROLES, KeyInfo

__all__ = ["Caller", "current_caller"]


@dataclass(frozen=True)
class Caller:
    """Who is calling: a key's name, the projects it may touch ("*" for all) and its role."""

    name: str = "local"
    projects: tuple[str, ...] = ("*",)
    role: str = "admin"
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The API key's name its starts count against ("" without a key: its project's quotas only), and the
    # key's own quotas (None: the deployment's default for keys).
    quota_key: str = ""
    max_in_flight: int | None = None
    starts_per_minute: int | None = None

    @classmethod
    def of_key(cls, key: KeyInfo) -> Caller:
        """The caller an API key stands for."""
        return cls(name=key.name, projects=tuple(key.projects), role=key.role, quota_key=key.name,
                   max_in_flight=key.max_in_flight, starts_per_minute=key.starts_per_minute)  # fmt: skip

    def sees(self, project_id: str) -> bool:
        """True if the caller may see the project."""
        return "*" in self.projects or project_id in self.projects

    def can(self, needed: str) -> bool:
        """True if the caller's role ranks at or above `needed` (read < operate < decide < admin)."""
        return self.role in ROLES and ROLES.index(self.role) >= ROLES.index(needed)


# Set by the transport that authenticated the request (HTTP middleware, WebSocket endpoint); unset on
# stdio and in process, where the server's default caller applies.
current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("current_caller", default=None)
