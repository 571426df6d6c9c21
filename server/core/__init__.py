"""The application core: what the service does, whoever asks and however they ask.

Owns: the caller and its rights (`Caller`, `current_caller`), the operations (`OrchestratorService`:
start, read, steer, decide), which quotas a start counts against (`QuotaPolicy`), their typed results (the
tools' output schemas), the checkpoint history, where deliverables live, how the error tree reads to a caller
(`refusal`), and how a production's outside failures read to people (`outside_failures`).

May import: `adapters`, `graphs`, `server.telemetry`. Nothing else of `server` (the MCP surface, the web,
the engine and the process build on it).
"""

from server.core._caller import Caller, current_caller
from server.core._checkpoints import Checkpoints
from server.core._deliverables import Deliverables
from server.core._errors import UNAVAILABLE, Refusal, refusal, refused_as
from server.core._failures import OutsideFailure, outside_failures
from server.core._models import (
    AgentInfo,
    AgentList,
    CheckpointDetail,
    CheckpointInfo,
    CheckpointList,
    Decision,
    DecisionResult,
    StartResult,
    StatusName,
    WorkflowList,
    WorkflowStatus,
    WorkflowSummary,
)
from server.core._quotas import QuotaPolicy, sweep_quotas
from server.core._service import OrchestratorService

__all__ = [
    "UNAVAILABLE",
    "AgentInfo",
    "AgentList",
    "Caller",
    "CheckpointDetail",
    "CheckpointInfo",
    "CheckpointList",
    "Checkpoints",
    "Decision",
    "DecisionResult",
    "Deliverables",
    "OrchestratorService",
    "OutsideFailure",
    "QuotaPolicy",
    "Refusal",
    "StartResult",
    "StatusName",
    "WorkflowList",
    "WorkflowStatus",
    "WorkflowSummary",
    "current_caller",
    "outside_failures",
    "refusal",
    "refused_as",
    "sweep_quotas",
]
