"""The `MCPServer` of the orchestrator, assembled from its parts."""

from __future__ import annotations

from collections.abc import Sequence

import mcp_types as types
from mcp.server.mcpserver import MCPServer

from adapters import WorkflowStore
from server.core import Caller, OrchestratorService, current_caller
from server.mcp._app import production_app
from server.mcp._browse import install_browsing
from server.mcp._handshake_tasks import HandshakeTasks
from server.mcp._inline import request_state_security
from server.mcp._progress import set_level_handler
from server.mcp._prompts import install_prompts
from server.mcp._resources import register_resources
from server.mcp._sdk import add_middleware, add_request_handler
from server.mcp._subscriptions import RedisNotifier
from server.mcp._task_listen import install_task_notifications
from server.mcp._task_view import TaskView
from server.mcp._tasks import TasksExtension
from server.mcp._tools import Tools, register_tools
from server.mcp._waiting import StatusWaiter

__all__ = ["build_mcp_server"]

_INSTRUCTIONS = """\
movie-orchestrator runs AI movie productions as durable workflows.
Start one with start_workflow (it returns at once with a workflow_id), follow it with get_status
(pass wait_seconds to wait for the next change), and answer its questions with submit_decision
when get_status shows pending_decisions. Workflows survive restarts; nothing runs inside a call.
"""


def build_mcp_server(
    service: OrchestratorService,
    store: WorkflowStore,
    notifier: RedisNotifier,
    *,
    default_caller: Caller | None = None,
    integrity_keys: Sequence[bytes] = (),
) -> MCPServer:
    """The MCPServer exposing the orchestrator's tools, resources, prompts, tasks and subscriptions.

    Args:
        service: the operations behind the tools.
        store: the workflow store (a waiting get_status reads the workflow's events from it).
        notifier: cross-instance change notices (subscriptions of both MCP generations, task notifications).
        default_caller: who calls when the transport authenticated nobody (stdio: the local user,
            or the key given with --api-key).
        integrity_keys: the deployment's keys; the sealing keys of inline decisions' request state derive
            from them, so any instance accepts another's (else a key of this process only).
    """
    fallback = default_caller or Caller()

    def caller() -> Caller:
        return current_caller.get() or fallback

    # Both generations' tasks, on the same workflows: the 2026-07-28 extension, the 2025-11-25 draft.
    handshake = HandshakeTasks(TaskView(service, fallback), service, store, fallback)
    tasks = TasksExtension(service, fallback, handshake)
    mcp = MCPServer(
        name="movie-orchestrator",
        instructions=_INSTRUCTIONS,
        version="0.1.0",
        subscriptions=notifier.bus,
        extensions=[tasks, production_app()],
        request_state_security=(
            request_state_security(integrity_keys, lambda: caller().name) if integrity_keys else None
        ),
    )
    add_middleware(mcp, handshake.middleware)
    add_request_handler(mcp, "resources/subscribe", types.SubscribeRequestParams, notifier.on_subscribe)
    add_request_handler(mcp, "resources/unsubscribe", types.UnsubscribeRequestParams, notifier.on_unsubscribe)
    add_request_handler(mcp, "logging/setLevel", types.SetLevelRequestParams, set_level_handler)
    install_task_notifications(mcp, tasks, notifier)
    install_browsing(mcp, service, caller)
    install_prompts(mcp, service, caller)
    register_tools(mcp, Tools(service, StatusWaiter(service, store), fallback))
    register_resources(mcp, service, caller)
    return mcp
