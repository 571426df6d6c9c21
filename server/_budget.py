"""Workflow budgets counted in Redis, so they hold across runs, instances and restarts.

    P:wf:{wid}:budget   HASH   agent_executions, outside_jobs: work charged so far

A charge that would go over the ceiling is refused and not counted (one Lua call, atomic), so after an
operator raises the budget, `retry_step` continues with the count where it stopped. The counters are
not signed: someone who can write to Redis can reset them, as they can delete the queue; they are a
brake on runaway work, not a security boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters import ScriptPipeliner, WorkflowStore
from graphs import WORKFLOWS, BudgetExceededError, BudgetLimits, Counted, WorkflowOptions, read_options
from server.settings import Settings

__all__ = ["BudgetBook", "WorkflowBudget", "deployment_limits"]

# Returns {1, used} when counted, {0, used} when refused. The TTL keeps the counters no longer than
# the workflow's other keys (it is refreshed on every charge).
_CHARGE = """
local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[2])
if used + amount > tonumber(ARGV[3]) then
  return {0, used}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, used + amount}
"""


def deployment_limits(settings: Settings) -> BudgetLimits:
    """The deployment's ceilings (settings)."""
    return BudgetLimits(
        agent_executions=settings.budget_agent_executions,
        outside_jobs=settings.budget_outside_jobs,
        fan_out=settings.budget_fan_out,
        step_seconds=settings.budget_step_seconds,
    )


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

    book: BudgetBook
    workflow_id: str
    limits: BudgetLimits

    async def charge(self, budget: Counted, amount: int = 1, *, where: str = "") -> None:
        """Count work about to be done; refuse it (uncounted) past the ceiling.

        Raises:
            BudgetExceededError: the work would go over the ceiling.
        """
        limit = int(getattr(self.limits, budget))
        counted, used = await self.book.charge(self.workflow_id, budget, amount, limit)
        if not counted:
            raise BudgetExceededError(budget, limit, used + amount, where)

    def check_width(self, width: int, *, where: str) -> None:
        """Refuse a fan-out wider than the ceiling.

        Raises:
            BudgetExceededError: `width` is above the fan-out ceiling.
        """
        if width > self.limits.fan_out:
            raise BudgetExceededError("fan_out", self.limits.fan_out, width, where)


class BudgetBook:
    """Every workflow's budget counters (one per process).

    Args:
        store: the workflow store (its client and key layout).
        settings: the deployment's ceilings.
        pipeliner: shares round trips with the checkpoints' and status updates' script calls.
    """

    def __init__(
        self, store: WorkflowStore, settings: Settings, pipeliner: ScriptPipeliner | None = None
    ) -> None:
        self._store = store
        self._pipeliner = pipeliner or ScriptPipeliner(store.client)
        self._script = store.client.register_script(_CHARGE)
        self.deployment = deployment_limits(settings)

    def key(self, wid: str) -> str:
        """The counters' key (in the workflow's hash slot)."""
        return self._store.key(wid, "budget")

    def limits(self, workflow: str, options: Mapping[str, Any] | None) -> BudgetLimits:
        """The ceilings of a workflow of kind `workflow` started with `options` (read leniently)."""
        return workflow_limits(self.deployment, read_options(WORKFLOWS[workflow].options, options))

    def for_workflow(
        self, workflow_id: str, workflow: str, options: Mapping[str, Any] | None
    ) -> WorkflowBudget:
        """The budget port of one workflow."""
        return WorkflowBudget(self, workflow_id, self.limits(workflow, options))

    async def charge(self, wid: str, budget: str, amount: int, limit: int) -> tuple[bool, int]:
        """Count `amount` of `budget` unless that goes over `limit`; returns (counted, used now)."""
        reply = await self._pipeliner.call(
            self._script, [self.key(wid)], [budget, amount, limit, self._store.retention_seconds]
        )
        return bool(int(reply[0])), int(reply[1])

    async def used(self, wid: str) -> dict[str, int]:
        """What a workflow has used so far."""
        raw = await self._store.client.hgetall(self.key(wid))
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
