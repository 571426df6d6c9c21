"""How a production's outside failures read to people: from its events, one line per kind of failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OutsideFailure", "outside_failures"]

_FAILURE_EVENTS = {"agent.failed", "agent.transient", "job.reported_late", "workflow.failed"}


@dataclass(frozen=True)
class OutsideFailure:
    """One kind of failure of an outside service in a production, and how often it happened."""

    what: str
    service: str
    operation: str
    step: str
    reason: str
    next: str
    agent: str = ""
    count: int = 1

    def line(self) -> str:
        """One sentence: who failed at what, where, in the service's own words, and what happened next."""
        who = f"{self.agent}: " if self.agent else ""
        where = f" at {self.step}" if self.step else ""
        times = f" (x{self.count})" if self.count > 1 else ""
        then = f"; next: {self.next}" if self.next else ""
        return f"{who}{self.service} {self.operation}{where} failed{times}: {self.reason}{then}"


def outside_failures(events: Iterable[Mapping[str, Any]]) -> list[OutsideFailure]:
    """The outside failures recorded in a workflow's events, alike ones counted together (oldest first).

    Steps of a fan-out (``scene.0``, ``scene.1``, ...) count as one kind; the first step is named.
    """
    kinds: dict[tuple[str, ...], OutsideFailure] = {}
    for e in events:
        what, data = str(e.get("what", "")), dict(e.get("data") or {})
        if what == "job.reported_late" and data.get("status") != "completed":
            data |= {
                "service": "task-service",
                "operation": "job",
                "next": "reported after its step had settled",
            }
        if what not in _FAILURE_EVENTS or not data.get("service"):
            continue
        step, agent = str(data.get("step", "")), str(data.get("agent", ""))
        service, operation = str(data["service"]), str(data.get("operation", ""))
        reason = str(data.get("reason") or data.get("detail") or data.get("error") or "")
        then = str(data.get("next", ""))
        key = (what, agent, service, operation, step.split(".", maxsplit=1)[0], reason, then)
        old = kinds.get(key)
        count = old.count + 1 if old else 1
        kinds[key] = OutsideFailure(
            what, service, operation, old.step if old else step, reason, then, agent, count
        )
    return list(kinds.values())
