"""Workflow budgets counted in Redis, so they hold across runs, instances and restarts.

A charge that would go over the ceiling is refused and not counted (one atomic script call, in the
store), so after an operator raises the budget, `retry_step` continues with the count where it stopped.
The counters are not signed: someone who can write to Redis can reset them, as they can delete the
queue; they are a brake on runaway work, not a security boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters import BudgetExceededError, WorkflowStore
from graphs import BudgetLimits, Counted, WorkflowOptions

__all__ = ["BudgetCounters", "WorkflowBudget", "workflow_limits"]


def workflow_limits(deployment: BudgetLimits, options: WorkflowOptions) -> BudgetLimits:
    """The ceilings of one workflow: the deployment's, or less where its options ask for less."""

    def least(mine: float | None, theirs: float) -> Any:
        return theirs if mine is None else min(mine, theirs)

    return BudgetLimits(
        agent_executions=least(options.max_agent_executions, deployment.agent_executions),
        outside_jobs=least(options.max_outside_jobs, deployment.outside_jobs),
        fan_out=least(options.max_fan_out, deployment.fan_out),
        step_seconds=least(options.max_step_seconds, deployment.step_seconds),
    )


@dataclass(frozen=True)
class WorkflowBudget:
    """`BudgetPort` of one workflow."""

    counters: BudgetCounters
    workflow_id: str
    limits: BudgetLimits

    async def charge(self, budget: Counted, amount: int = 1, *, where: str = "") -> None:
        """Count work about to be done; refuse it (uncounted) past the ceiling.

        Raises:
            BudgetExceededError: the work would go over the ceiling.
        """
        limit = int(getattr(self.limits, budget))
        counted, used = await self.counters.charge(self.workflow_id, budget, amount, limit)
        if not counted:
            raise BudgetExceededError(budget, limit, used + amount, where)

    def check_width(self, width: int, *, where: str) -> None:
        """Refuse a fan-out wider than the ceiling.

        Raises:
            BudgetExceededError: `width` is above the fan-out ceiling.
        """
        if width > self.limits.fan_out:
            raise BudgetExceededError("fan_out", self.limits.fan_out, width, where)


class BudgetCounters:
    """Every workflow's budget counters (one per process).

    Args:
        store: the workflow store (the counters live beside each workflow's keys).
        deployment: the deployment's ceilings (settings).
    """

    def __init__(self, store: WorkflowStore, deployment: BudgetLimits) -> None:
        self._store = store
        self.deployment = deployment

    def for_workflow(self, workflow_id: str, options: WorkflowOptions) -> WorkflowBudget:
        """The budget port of one workflow run with `options`."""
        return WorkflowBudget(self, workflow_id, workflow_limits(self.deployment, options))

    async def charge(self, wid: str, budget: str, amount: int, limit: int) -> tuple[bool, int]:
        """Count `amount` of `budget` unless that goes over `limit`; returns (counted, used now)."""
        return await self._store.charge_budget(wid, budget, amount, limit)

    async def used(self, wid: str) -> dict[str, int]:
        """What a workflow has used so far."""
        return await self._store.budget_used(wid)
