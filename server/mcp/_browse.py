"""Browsing for desktop clients: completions of resource-template and prompt arguments, and the
caller's recent workflows as concrete resources in ``resources/list`` (paged).

Everything is read as the caller: another project's workflows are neither listed nor completed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
import structlog
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from adapters import InvalidArgumentError, OrchestratorError, PermissionDeniedError, Status
from server.core import Caller, OrchestratorService
from server.mcp._sdk import add_request_handler

__all__ = ["install_browsing"]

log = structlog.get_logger(__name__)

_PAGE = 50
_MAX_VALUES = 100  # the spec's cap on one completion answer
_RECENT = 200  # workflows looked at for a completion


def _completion(values: list[str]) -> types.CompleteResult:
    return types.CompleteResult(
        completion=types.Completion(
            values=values[:_MAX_VALUES], total=len(values), has_more=len(values) > _MAX_VALUES
        )
    )


class Browsing:
    """The handlers (`install_browsing` registers them).

    Args:
        mcp: the server (its static resources head the first page).
        service: the operations, called as the caller.
        who: the current caller.
    """

    def __init__(self, mcp: MCPServer, service: OrchestratorService, who: Callable[[], Caller]) -> None:
        self._mcp = mcp
        self._service = service
        self._who = who

    async def _recent(self, caller: Caller, status: str | None = None) -> list[Any]:
        page = await self._service.list_workflows(caller, status=status, limit=_RECENT)
        return list(page.workflows)

    async def list_resources(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """``resources/list``: the static resources, then the caller's workflows newest first."""
        del ctx
        cursor = params.cursor if params is not None else None
        static = [] if cursor else await self._mcp.list_resources()
        try:
            page = await self._service.list_workflows(self._who(), cursor=cursor, limit=_PAGE)
        except InvalidArgumentError as exc:
            raise MCPError(
                code=types.INVALID_PARAMS, message=f"{exc}; pass the nextCursor of an earlier page"
            ) from exc
        except PermissionDeniedError:
            # A key without the read role still sees the static list.
            return types.ListResourcesResult(resources=static)
        workflows = [
            types.Resource(
                uri=f"workflow://{w.workflow_id}/state",
                name=f"{w.workflow} {w.workflow_id}",
                title=f"{w.workflow.replace('_', ' ')} of {w.project_id}: {w.status}, {w.percent:.0f}%",
                description=f"workflow {w.workflow_id} of project {w.project_id} ({w.status})",
                mime_type="application/json",
            )
            for w in page.workflows
        ]
        return types.ListResourcesResult(resources=[*static, *workflows], next_cursor=page.next_cursor)

    async def complete(self, ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
        """``completion/complete`` for workflow and checkpoint ids, and the prompts' arguments."""
        del ctx
        caller = self._who()
        name, typed = params.argument.name, params.argument.value or ""
        given = dict(params.context.arguments or {}) if params.context is not None else {}
        try:
            values = await self._values(caller, params.ref, name, given)
        except OrchestratorError:
            # Completion is a convenience: an unknown or hidden workflow completes to nothing.
            values = []
        return _completion([v for v in values if v.startswith(typed)])

    async def _values(self, caller: Caller, ref: Any, name: str, given: dict[str, str]) -> list[str]:
        target = ref.uri if isinstance(ref, types.ResourceTemplateReference) else getattr(ref, "name", "")
        if name == "workflow_id":
            if target == "review_decisions":
                waiting = await self._recent(caller, status=Status.WAITING_DECISION)
                others = [w for w in await self._recent(caller) if w.status != Status.WAITING_DECISION]
                return [w.workflow_id for w in [*waiting, *others]]
            return [w.workflow_id for w in await self._recent(caller)]
        if name == "checkpoint_id" and given.get("workflow_id"):
            listed = await self._service.checkpoints(caller, given["workflow_id"], limit=_MAX_VALUES)
            return [c.checkpoint_id for c in listed.checkpoints]
        if name == "project_id":
            if "*" not in caller.projects:
                return sorted(caller.projects)
            return list(dict.fromkeys(w.project_id for w in await self._recent(caller)))
        return []


def install_browsing(mcp: MCPServer, service: OrchestratorService, who: Callable[[], Caller]) -> None:
    """Serve ``completion/complete`` and a ``resources/list`` that includes the caller's workflows."""
    browsing = Browsing(mcp, service, who)
    add_request_handler(mcp, "resources/list", types.PaginatedRequestParams, browsing.list_resources)
    add_request_handler(mcp, "completion/complete", types.CompleteRequestParams, browsing.complete)
