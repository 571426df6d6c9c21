"""The run engine: workers claim runs from the queue, hold leases, and drive the workflows' graphs.

Owns: the worker pool (`Engine`), one run and every way it ends (`server.engine._run`), the ports a run's
nodes call (`RunPorts`: the outside services behind their guards, the memo, the deliverables folder), the
Task Service's jobs (`JobRef`, `TaskServiceJobs`) and the healing of those it lost (`Healing`), budgets, poison-run attempts, the memory mark, the
CPU turns' loop-lag control, the state ceiling, and the integrity mark a run checks before it acts.

May import: `server.core`, `server.telemetry`, `adapters`, `graphs`. Never the MCP surface, the web or
the process: the engine hears of callers only through Redis (the queue, the records, pause/cancel).
"""

from server.engine._budget_counters import BudgetCounters, WorkflowBudget, workflow_limits
from server.engine._engine import Engine
from server.engine._healing import Healing, JobLost, TaskLists
from server.engine._jobs import (
    JOB_ENDED,
    WEBHOOK_PATH,
    JobRef,
    TaskServiceJobs,
    cancel_jobs,
    outcome_of_webhook,
)
from server.engine._memory import MemoryMark
from server.engine._ports import RunPorts, ServiceClients
from server.engine._state_cap import SizeCappedSerializer
from server.engine._turns import LoopLagControl

__all__ = [
    "JOB_ENDED",
    "WEBHOOK_PATH",
    "BudgetCounters",
    "Engine",
    "Healing",
    "JobLost",
    "JobRef",
    "LoopLagControl",
    "MemoryMark",
    "RunPorts",
    "ServiceClients",
    "SizeCappedSerializer",
    "TaskLists",
    "TaskServiceJobs",
    "WorkflowBudget",
    "cancel_jobs",
    "outcome_of_webhook",
    "workflow_limits",
]
