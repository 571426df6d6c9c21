"""Poison runs, counted across instances.

Every run of a workflow that an instance starts is recorded in Redis before it starts and forgotten when
it ends in any way the process lives through (completed, waiting, paused, failed, handed back). What is
left counts the runs that ended their worker: the process died, was killed, or hung past its lease. The
engine quarantines the workflow when one more would exceed the limit, instead of letting every instance of
the deployment take it over and die in turn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from adapters import WorkflowStore

__all__ = ["Attempt", "RunAttempts", "quarantine_reason"]


@dataclass(frozen=True)
class Attempt:
    """One recorded start of a run: who started it, when, and at which step the workflow stood."""

    instance: str
    at: float
    step: str


class RunAttempts:
    """The runs of each workflow started and not yet ended (``P:wf:{wid}:attempts``, in the store).

    The list shares the workflow's hash tag (one slot on Redis Cluster) and expires with the workflow's
    retention, so an abandoned count never outlives its workflow.
    """

    def __init__(self, store: WorkflowStore) -> None:
        self._store = store

    def key(self, wid: str) -> str:
        """The attempts list of a workflow (a Redis LIST in the workflow's hash slot)."""
        return self._store.key(wid, "attempts")

    async def begin(self, wid: str, instance: str, step: str) -> list[Attempt]:
        """Record a run starting now; returns every attempt not ended, this one last."""
        entry = json.dumps({"instance": instance, "at": time.time(), "step": step})
        out = []
        for raw in await self._store.begin_attempt(wid, entry):
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
        await self._store.keep_last_attempt(wid)

    async def clear(self, wid: str) -> None:
        """The run ended with its process alive: it was not a poison run."""
        await self._store.clear_attempts(wid)


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
