"""A workflow's budgets: ceilings on the work one workflow may cause, enforced while it runs.

The engine hands each run a `BudgetPort` in its `Ports`. Nodes charge agent executions to it (in
`run_agent`), the Task Service port charges outside jobs, the production graph checks a fan-out
before building it, and the engine itself watches the width and the wall-clock time of every step.
Exceeding a budget raises `BudgetExceededError`, which no node catches: the workflow stops, failed,
and `retry_step` continues it once the budget is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from adapters.errors import BudgetExceededError  # noqa: F401 - named in the docstrings below

__all__ = ["BUDGETS", "BudgetLimits", "BudgetPort", "Counted", "Unlimited"]

Counted = Literal["agent_executions", "outside_jobs"]
BUDGETS = ("agent_executions", "outside_jobs", "fan_out", "step_seconds")


@dataclass(frozen=True)
class BudgetLimits:
    """The ceilings of one workflow (the deployment's, or less when its options ask for less)."""

    agent_executions: int = 1_000
    outside_jobs: int = 400
    fan_out: int = 50
    step_seconds: float = 3_600.0


class BudgetPort(Protocol):
    """Counts one workflow's work against its limits."""

    @property
    def limits(self) -> BudgetLimits:
        """The workflow's ceilings."""
        ...

    async def charge(self, budget: Counted, amount: int = 1, *, where: str = "") -> None:
        """Count work about to be done.

        Raises:
            BudgetExceededError: the work would go over the ceiling (nothing is counted).
        """
        ...

    def check_width(self, width: int, *, where: str) -> None:
        """Check a fan-out before it is built.

        Raises:
            BudgetExceededError: `width` parallel branches are more than the ceiling.
        """
        ...


@dataclass(frozen=True)
class Unlimited:
    """A budget that never stops anything (graph tests, callers without an engine)."""

    limits: BudgetLimits = BudgetLimits(10**9, 10**9, 10**9, float("inf"))

    async def charge(self, budget: Counted, amount: int = 1, *, where: str = "") -> None:
        """Count nothing."""

    def check_width(self, width: int, *, where: str) -> None:
        """Allow any width."""
