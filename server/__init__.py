"""movie-orchestrator's server: the MCP surface, the web, the run engine and the process, over `adapters`
and `graphs`.

The house, bottom floor first (each package's docstring says what it owns and what it may import)::

    server.settings, server.telemetry   the settings object; logs and metrics        (import no server part)
    server.core                         the caller, the operations, their results    (core)
    server.engine                       workers, runs, ports, jobs, budgets          (core)
    server.mcp                          tools, resources, tasks, subscriptions       (core)
    server.web                          HTTP port: /mcp, /ws, webhooks, health, board (mcp, engine, core)
    server.sandbox                      stand-ins of the outside services            (web)
    server.process                      assembly, CLI, engine processes, shutdown    (everything)

The public API is what this module exports; tests and benchmarks use it (and the sub-packages' own
exports for their parts), never a ``_private`` module. Names are loaded on first use, so importing
`server.settings` does not build the whole house.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters import Status
    from server.core import Caller, OrchestratorService, WorkflowStatus
    from server.engine import JobRef
    from server.process import Orchestrator, main, open_orchestrator
    from server.sandbox import Sandbox
    from server.settings import Settings

__all__ = [
    "Caller",
    "JobRef",
    "Orchestrator",
    "OrchestratorService",
    "Sandbox",
    "Settings",
    "Status",
    "WorkflowStatus",
    "main",
    "open_orchestrator",
]

_WHERE = {
    "Caller": "server.core",
    "JobRef": "server.engine",
    "Orchestrator": "server.process",
    "OrchestratorService": "server.core",
    "Sandbox": "server.sandbox",
    "Settings": "server.settings",
    "Status": "adapters",
    "WorkflowStatus": "server.core",
    "main": "server.process",
    "open_orchestrator": "server.process",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module 'server' has no attribute {name!r}"
    raise AttributeError(msg)
