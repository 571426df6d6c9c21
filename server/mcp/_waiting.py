"""A waiting ``get_status``: wait for the workflow's next change (or a status), keep the caller company
meanwhile (`server.mcp._progress`), and ask a pending decision inline where the client can answer it
(`server.mcp._inline`)."""

from __future__ import annotations

import mcp_types as types
from mcp.server.mcpserver import Context

from adapters import Status, WorkflowStore
from server.core import Caller, OrchestratorService, WorkflowStatus
from server.mcp._inline import InlineDecisions
from server.mcp._progress import WaitFeed

__all__ = ["StatusWaiter"]


class StatusWaiter:
    """The long-poll form of ``get_status``.

    Args:
        service: the operations.
        store: the workflow store (what a waiting caller is told meanwhile is read from its events).
    """

    def __init__(self, service: OrchestratorService, store: WorkflowStore) -> None:
        self._service = service
        self._store = store
        self.inline = InlineDecisions(service)

    async def get_status(
        self, ctx: Context, caller: Caller, workflow_id: str, wait_seconds: float, until: list[str] | None
    ) -> WorkflowStatus | types.InputRequiredResult:
        """Wait up to `wait_seconds` (see `OrchestratorService.wait_status`); a retried call that carries
        inline answers records them and returns the status at once."""
        service = self._service
        if await self.inline.answers(ctx, caller, workflow_id):
            return await service.get_status(caller, workflow_id)
        if not wait_seconds:
            return await service.get_status(caller, workflow_id)
        asks = self.inline.can_ask(ctx, caller)
        feed = WaitFeed(ctx, self._store, workflow_id)
        if feed.active or asks:
            # Also the visibility check: nothing is told of a workflow the caller may not see.
            now = await service.get_status(caller, workflow_id)
            if asks and now.status == Status.WAITING_DECISION:
                return await self.inline.ask(ctx, caller, now)
            if asks and until:
                until = [*until, Status.WAITING_DECISION]
        async with feed.running():
            status = await service.wait_status(caller, workflow_id, wait_seconds, feed.on_change, until)
        return await self.inline.ask(ctx, caller, status) if asks else status
