"""Work that cannot run away: poison runs counted across instances, a memory high-water mark, a state ceiling.

- `RunAttempts`: every run of a workflow that an instance starts is recorded in Redis before it starts and
  forgotten when it ends in any way the process lives through (completed, waiting, paused, failed, handed
  back). What is left counts the runs that ended their worker: the process died, was killed, or hung past its
  lease. The engine quarantines the workflow when one more would exceed the limit, instead of letting every
  instance of the deployment take it over and die in turn.
- `MemoryMark`: the process's resident memory against a high-water mark; above it the engine claims no new
  runs (the runs it holds go on) and says so in /readyz and metrics.
- `SizeCappedSerializer`: a LangGraph serializer that refuses to write one value of a workflow's state above
  a ceiling, so a runaway state fails its workflow with a clear error instead of filling memory and Redis.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from langgraph.checkpoint.serde.base import SerializerProtocol

from adapters import WorkflowStore
from adapters.errors import PermanentError

__all__ = ["MemoryMark", "RunAttempts", "SizeCappedSerializer", "StateTooLargeError", "memory_limit_bytes"]


@dataclass(frozen=True)
class Attempt:
    """One recorded start of a run: who started it, when, and at which step the workflow stood."""

    instance: str
    at: float
    step: str


class RunAttempts:
    """The runs of each workflow started and not yet ended, in Redis (``P:wf:{wid}:attempts``, a LIST).

    The key shares the workflow's hash tag (one slot on Redis Cluster) and expires with the workflow's
    retention, so an abandoned count never outlives its workflow.
    """

    def __init__(self, store: WorkflowStore) -> None:
        self._store = store

    def key(self, wid: str) -> str:
        """The attempts list of a workflow."""
        return self._store.key(wid, "attempts")

    async def begin(self, wid: str, instance: str, step: str) -> list[Attempt]:
        """Record a run starting now; returns every attempt not ended, this one last."""
        entry = json.dumps({"instance": instance, "at": time.time(), "step": step})
        pipe = self._store.client.pipeline(transaction=False)
        pipe.rpush(self.key(wid), entry)
        pipe.expire(self.key(wid), self._store.retention_seconds)
        pipe.lrange(self.key(wid), 0, -1)
        *_, rows = await pipe.execute()
        out = []
        for raw in rows:
            try:
                d = json.loads(raw)
                out.append(Attempt(str(d["instance"]), float(d["at"]), str(d.get("step", ""))))
            except (ValueError, KeyError, TypeError):
                out.append(Attempt("?", 0.0, ""))
        return out

    async def progressed(self, wid: str) -> None:
        """The current run finished a step: forget the earlier attempts, keep this one (it may still die).

        A poison run dies in the same step every time and never gets here; a workflow that merely shared
        an instance with one (and was taken down with it) does, so it is not charged for its neighbour.
        """
        await self._store.client.ltrim(self.key(wid), -1, -1)

    async def clear(self, wid: str) -> None:
        """The run ended with its process alive: it was not a poison run."""
        await self._store.client.delete(self.key(wid))


def quarantine_reason(earlier: list[Attempt], limit: int) -> str:
    """What a client reads in `last_error` of a quarantined workflow."""
    instances = ", ".join(dict.fromkeys(a.instance for a in earlier))
    step = earlier[-1].step if earlier else ""
    where = f" at step {step!r}" if step else ""
    return (
        f"quarantined: {len(earlier)} runs of this workflow{where} ended their worker (the process died, "
        f"was killed or stopped answering) on {instances}; RUN_MAX_ATTEMPTS={limit}. It is not run again "
        "automatically: fix the cause, then retry_step gives it new attempts"
    )


def memory_limit_bytes() -> int:
    """The memory this process may use: its cgroup's limit when it has one, else the machine's memory."""
    total = int(psutil.virtual_memory().total)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


class MemoryMark:
    """Resident memory of this process against a high-water mark.

    Args:
        mark_bytes: the mark; above it `above()` is True.
        every: seconds a reading is reused (reading costs a /proc read).
    """

    def __init__(self, mark_bytes: int, every: float = 0.5) -> None:
        self.mark_bytes = mark_bytes
        self._proc = psutil.Process(os.getpid())
        self._every = every
        self._read_at = 0.0
        self._rss = 0

    @property
    def rss(self) -> int:
        """Resident set size in bytes (refreshed at most every `every` seconds)."""
        now = time.monotonic()
        if now - self._read_at >= self._every:
            self._rss = int(self._proc.memory_info().rss)
            self._read_at = now
        return self._rss

    def above(self) -> bool:
        """True when the process uses more than the mark."""
        return self.rss > self.mark_bytes

    def describe(self) -> str:
        """For logs and /readyz."""
        return f"resident memory {self.rss / 2**20:.0f} MiB is above MEMORY_HIGH_WATER_MB={self.mark_bytes / 2**20:.0f}"


class StateTooLargeError(PermanentError):
    """One value of a workflow's state serialized above `STATE_MAX_BYTES`."""


class SizeCappedSerializer:
    """A LangGraph serializer that refuses values above a ceiling (put it inside the signing serializer).

    Every value LangGraph stores (each channel's value, each step's writes) goes through `dumps_typed`, so
    the ceiling bounds each part of a workflow's state; a graph has a fixed set of channels, so the whole
    state is bounded too. Reading is not capped: what was written under a higher ceiling stays readable.
    """

    def __init__(self, inner: SerializerProtocol, max_bytes: int) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize with `inner`; raise when the result is above the ceiling."""
        kind, data = self.inner.dumps_typed(obj)
        if len(data) > self.max_bytes:
            msg = (
                f"state_too_large: one value of the workflow's state ({type(obj).__name__}) serialized to "
                f"{len(data)} bytes, above STATE_MAX_BYTES={self.max_bytes}; the workflow stops instead of "
                "growing without bound (raise the ceiling, then retry_step)"
            )
            raise StateTooLargeError(msg)
        return kind, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Deserialize with `inner`."""
        return self.inner.loads_typed(data)
