"""``notifications/tasks`` on ``subscriptions/listen`` streams (Tasks extension, optional part).

A listen request whose filter carries ``taskIds`` gets, besides the resource events the SDK's handler
serves, a ``notifications/tasks`` frame with the full task (what ``tasks/get`` would answer) each time
one of those workflows changes. Changes come from the Redis change notices every instance receives
(`RedisNotifier.watch`), so a stream on instance B hears a task run and answered on instance A.
Requests without ``taskIds`` go to the SDK's handler unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal, cast

import anyio
import mcp_types as types
import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ListenHandler, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, event_matches, event_to_notification
from pydantic import ConfigDict
from pydantic.alias_generators import to_camel

from server.mcp._sdk import add_request_handler, request_handler
from server.mcp._subscriptions import RedisNotifier
from server.mcp._tasks import TasksExtension, require_declared

__all__ = ["TaskListenHandler", "install_task_notifications"]

log = structlog.get_logger(__name__)

_MAX_TASK_IDS = 100


class _TaskParams(types.NotificationParams):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class TaskStatusNotification(types.Notification[_TaskParams, Literal["notifications/tasks"]]):
    """``notifications/tasks``: a complete DetailedTask in its params."""

    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: _TaskParams


class TaskListenHandler:
    """Serves ``subscriptions/listen``; adds ``notifications/tasks`` for the requested ``taskIds``.

    Args:
        inner: the SDK's handler (serves every request without ``taskIds``).
        tasks: builds the task a workflow is.
        notifier: this instance's change notices and event bus.
    """

    def __init__(self, inner: ListenHandler, tasks: TasksExtension, notifier: RedisNotifier) -> None:
        self._inner = inner
        self._tasks = tasks
        self._notifier = notifier

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """Serve one listen stream."""
        wanted = (params.notifications.model_extra or {}).get("taskIds")
        if not wanted:
            return await self._inner(ctx, params)
        require_declared(ctx)
        if not isinstance(wanted, list) or len(wanted) > _MAX_TASK_IDS:
            msg = f"notifications.taskIds must be a list of at most {_MAX_TASK_IDS} task ids"
            raise MCPError(code=types.INVALID_PARAMS, message=msg)
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(types.INVALID_REQUEST, "subscriptions/listen requires a request id")
        # Tasks the caller may not see are left out of the acknowledgement, as unknown ones are.
        task_ids = [t for t in dict.fromkeys(wanted) if isinstance(t, str) and await self._tasks.visible(t)]
        honored = _honored(params.notifications, task_ids)
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        await self._stream(ctx, honored, task_ids, meta)
        return types.SubscriptionsListenResult(_meta=meta)

    async def _stream(
        self, ctx: ServerRequestContext[Any, Any], honored: types.SubscriptionFilter, task_ids: list[str],
        meta: dict[str, Any],
    ) -> None:  # fmt: skip
        """Acknowledge, then send the matching resource events and a task notification per change."""
        uris = frozenset(honored.resource_subscriptions or ())
        send, recv = anyio.create_memory_object_stream[ServerEvent | str](1024)

        def deliver(event: ServerEvent) -> None:
            if event_matches(honored, uris, event):
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                    send.send_nowait(event)

        async def follow(wid: str, notices: asyncio.Queue[str]) -> None:
            while True:
                await notices.get()
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                    send.send_nowait(wid)

        unsubscribe = self._notifier.bus.subscribe(deliver)
        last: dict[str, tuple[str, str]] = {}
        try:
            with contextlib.ExitStack() as watching:
                queues = {wid: watching.enter_context(self._notifier.watch(wid)) for wid in task_ids}
                ack = types.SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
                await ctx.session.send_notification(
                    types.SubscriptionsAcknowledgedNotification(params=ack), related_request_id=ctx.request_id
                )
                async with anyio.create_task_group() as tg:
                    for wid, queue in queues.items():
                        tg.start_soon(follow, wid, queue)
                    async for item in recv:
                        note = await self._note(item, meta, last)
                        if note is not None:
                            await ctx.session.send_notification(note, related_request_id=ctx.request_id)
        finally:
            unsubscribe()
            send.close()
            recv.close()

    async def _note(
        self, item: ServerEvent | str, meta: dict[str, Any], last: dict[str, tuple[str, str]]
    ) -> types.ServerNotification | None:
        """The notification of a resource event, or of a task's change (None when nothing new to say)."""
        if not isinstance(item, str):
            return event_to_notification(item, meta)
        task = await self._tasks.current(item)
        if task is None:
            return None
        seen = (task["status"], task["lastUpdatedAt"])
        if last.get(item) == seen:
            return None
        last[item] = seen
        note = TaskStatusNotification(params=_TaskParams.model_validate({**task, "_meta": meta}))
        return cast("types.ServerNotification", note)


def _honored(filt: types.SubscriptionFilter, task_ids: list[str]) -> types.SubscriptionFilter:
    """The filter this server honours: the request's, with only the tasks the caller may see."""
    return types.SubscriptionFilter.model_validate(
        {
            "toolsListChanged": True if filt.tools_list_changed else None,
            "promptsListChanged": True if filt.prompts_list_changed else None,
            "resourcesListChanged": True if filt.resources_list_changed else None,
            "resourceSubscriptions": list(filt.resource_subscriptions)
            if filt.resource_subscriptions
            else None,
            "taskIds": task_ids,
        }
    )


def install_task_notifications(mcp: MCPServer, tasks: TasksExtension, notifier: RedisNotifier) -> None:
    """Serve ``subscriptions/listen`` through `TaskListenHandler` (wrapping the SDK's handler)."""
    entry = request_handler(mcp, "subscriptions/listen")
    if entry is None or not isinstance(entry.handler, ListenHandler):
        return
    handler = TaskListenHandler(entry.handler, tasks, notifier)
    add_request_handler(mcp, "subscriptions/listen", types.SubscriptionsListenRequestParams, handler)
