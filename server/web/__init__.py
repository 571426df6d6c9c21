"""The HTTP port: MCP over Streamable HTTP (``/mcp``) and WebSocket (``/ws``), API keys, Task Service
webhooks, health and metrics, and the production board; and running ASGI apps on loopback.

Owns: `build_http_app` and its parts (`WebhookReceiver`, `Health`, `Board`), the per-request JSON/SSE
choice of Streamable HTTP, the WebSocket bridge to an MCP session, `serve_app`.

May import: `server.mcp`, `server.engine` (a webhook's job identity), `server.core`, `server.telemetry`,
`adapters`, `graphs`. Never the process.
"""

from server.web._app import build_http_app
from server.web._auth import ApiKeyMiddleware, authenticate
from server.web._health import Health
from server.web._serve import serve_app, serve_apps
from server.web._webhooks import WebhookReceiver
from server.web._ws import serve_mcp_websocket
from server.web.board import BOARD_API, Board

__all__ = [
    "BOARD_API",
    "ApiKeyMiddleware",
    "Board",
    "Health",
    "WebhookReceiver",
    "authenticate",
    "build_http_app",
    "serve_app",
    "serve_apps",
    "serve_mcp_websocket",
]
