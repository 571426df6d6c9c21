"""Which quotas a start counts against: its project's (from the settings) and its API key's (the key's own, else
the deployment's default for keys); the reservations themselves are `adapters.QuotaStore`'s."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from adapters import Limits, OrchestratorError, QuotaStore, Tenancy, WorkflowStore
from server.core._caller import Caller

__all__ = ["QuotaPolicy", "sweep_quotas"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class QuotaPolicy:
    """The deployment's quotas.

    Attributes:
        project: every project's (``QUOTA_PROJECT_MAX_IN_FLIGHT``, ``QUOTA_PROJECT_STARTS_PER_MINUTE``).
        key: a key's when it sets none of its own (``QUOTA_KEY_MAX_IN_FLIGHT``, ``QUOTA_KEY_STARTS_PER_MINUTE``).
    """

    project: Limits = field(default_factory=lambda: Limits(source="settings"))
    key: Limits = field(default_factory=lambda: Limits(source="settings"))

    def tenancy(self, caller: Caller, project: str) -> Tenancy:
        """The quotas a start of `project` by `caller` counts against."""
        if not caller.quota_key:
            return Tenancy(project, self.project)
        own = caller.max_in_flight is not None or caller.starts_per_minute is not None
        key = Limits(
            self.key.max_in_flight if caller.max_in_flight is None else caller.max_in_flight,
            self.key.starts_per_minute if caller.starts_per_minute is None else caller.starts_per_minute,
            f"set on the key: keys quota {caller.quota_key}" if own else self.key.source,
        )
        return Tenancy(project, self.project, caller.quota_key, key)


async def sweep_quotas(quotas: QuotaStore, store: WorkflowStore, instance: str, every: float = 30.0) -> None:
    """Release, every `every` seconds, the reservations of workflows that ended or never came to exist (a crash
    between a reservation and its record); one instance at a time. Until cancelled."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(OrchestratorError):
            released = await quotas.sweep(instance, store.statuses, older_than=2 * every)
            if released:
                log.warning("quotas.swept", released=released)
