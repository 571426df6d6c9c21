"""The resources: a workflow's state, decisions, events and checkpoints, the security audit, the agents."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from adapters import OrchestratorError
from server.core import Caller, OrchestratorService, Refusal, refused_as

__all__ = ["as_resource", "register_resources"]


async def as_resource(coro: Awaitable[Any]) -> str:
    """An operation's answer as a resource's JSON text; a refusal becomes a resource error."""

    def refused(said: Refusal, exc: OrchestratorError) -> Exception:
        return ResourceNotFoundError(str(exc)) if said.not_found else ResourceError(said.text)

    value = await refused_as(coro, refused)
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json(indent=1))
    return json.dumps(value, indent=1, default=str)


async def _now(fn: Callable[[], Any]) -> Any:
    return fn()


def register_resources(mcp: MCPServer, service: OrchestratorService, caller: Callable[[], Caller]) -> None:
    """Register every resource (the workflow ones are templates, subscribable)."""

    @mcp.resource("workflow://{workflow_id}/state", mime_type="application/json",
                  description="The workflow's status (the same as get_status).")  # fmt: skip
    async def state_resource(workflow_id: str) -> str:
        return await as_resource(service.get_status(caller(), workflow_id))

    @mcp.resource("workflow://{workflow_id}/decisions", mime_type="application/json",
                  description="Open decisions and the answers recorded so far.")  # fmt: skip
    async def decisions_resource(workflow_id: str) -> str:
        return await as_resource(service.decisions(caller(), workflow_id))

    @mcp.resource("workflow://{workflow_id}/events", mime_type="application/json",
                  description="The audit log: every state change with who, what, when and correlation id.")  # fmt: skip
    async def events_resource(workflow_id: str) -> str:
        return await as_resource(service.events(caller(), workflow_id))

    @mcp.resource("workflow://{workflow_id}/checkpoints", mime_type="application/json",
                  description="The workflow's checkpoints, newest first (fork from any of them).")  # fmt: skip
    async def checkpoints_resource(workflow_id: str) -> str:
        return await as_resource(service.checkpoints(caller(), workflow_id))

    @mcp.resource("workflow://{workflow_id}/checkpoints/{checkpoint_id}", mime_type="application/json",
                  description="One checkpoint's state values and metadata.")  # fmt: skip
    async def checkpoint_resource(workflow_id: str, checkpoint_id: str) -> str:
        return await as_resource(service.checkpoint(caller(), workflow_id, checkpoint_id))

    @mcp.resource("security://audit", mime_type="application/json",
                  description="Security events: auth failures, key changes, denied calls, integrity failures, "
                              "decisions. Admin keys only.")  # fmt: skip
    async def security_resource() -> str:
        return await as_resource(service.security_audit(caller()))

    @mcp.resource("agents://registry", mime_type="application/json",
                  description="Every agent of the production with its phase, capabilities and operation.")  # fmt: skip
    async def agents_resource() -> str:
        return await as_resource(_now(service.list_agents))
