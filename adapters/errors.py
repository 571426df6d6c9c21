"""Errors raised by the adapters, translated at the boundary from redis, httpx and websockets.

    OrchestratorError
    ├── TransientError        retry with backoff (connect errors, timeouts, 429, 5xx, Redis down)
    ├── PermanentError        never retry (4xx, bad data, a contract the service does not honour)
    ├── RecoverableError      this agent cannot do it; route to an alternative or ask a human
    └── EmbeddedRedisError    the private redis-server could not be started or reached
        └── DataDirLockedError   another live process owns the data folder

Callers catch the branch they can act on; everything else propagates to the top of a request or a run.
"""

from __future__ import annotations

__all__ = [
    "DataDirLockedError",
    "EmbeddedRedisError",
    "OrchestratorError",
    "PermanentError",
    "RecoverableError",
    "TransientError",
]


class OrchestratorError(Exception):
    """Root of every error this service raises on purpose."""


class TransientError(OrchestratorError):
    """A failure that may succeed when tried again later."""


class PermanentError(OrchestratorError):
    """A failure that will fail the same way however often it is tried."""


class RecoverableError(OrchestratorError):
    """The chosen agent or service cannot do this; another agent or a human may."""


class EmbeddedRedisError(OrchestratorError):
    """The private redis-server could not be started, reached or stopped."""


class DataDirLockedError(EmbeddedRedisError):
    """The data folder is locked by another live process."""
