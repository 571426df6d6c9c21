"""The MCP surface: tools, resources, prompts, completions, subscriptions, the Tasks extension, inline
decisions, progress and log notifications, and the MCP App, over `server.core`'s operations.

Owns: `build_mcp_server` (one `MCPServer` per process, any transport), how a workflow reads as an MCP
task, what a waiting caller is told meanwhile, the cross-instance change notices (`RedisNotifier`), and the
one place that reaches into the SDK's private parts (`server.mcp._sdk`).

May import: `server.core`, `server.telemetry`, `adapters`, `graphs`. Never the engine, the web or the
process: transports (stdio, Streamable HTTP, WebSocket) run this server; it does not know them.
"""

from server.mcp._app import APP_META, APP_URI
from server.mcp._inline import ElicitationAnswers
from server.mcp._progress import PLAIN_REPLY, describe, event_log
from server.mcp._sdk import lowlevel
from server.mcp._server import build_mcp_server
from server.mcp._subscriptions import HTTP_SESSION, RedisNotifier
from server.mcp._tasks import TASKS_EXTENSION, TasksExtension

__all__ = [
    "APP_META",
    "APP_URI",
    "HTTP_SESSION",
    "PLAIN_REPLY",
    "TASKS_EXTENSION",
    "ElicitationAnswers",
    "RedisNotifier",
    "TasksExtension",
    "build_mcp_server",
    "describe",
    "event_log",
    "lowlevel",
]
