"""The production view as an MCP App (extension ``io.modelcontextprotocol/ui``).

``start_workflow`` and ``get_status`` carry ``_meta.ui.resourceUri`` pointing at a ``ui://`` HTML
resource; a host that renders MCP Apps shows it inline in a sandboxed iframe and feeds it the tool's
result. The page follows the production with ``get_status`` and answers decisions with
``submit_decision``, both through the host's own MCP connection (so the same key, scope and role).
Clients without Apps support get the same results as before: the resource is only an addition.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from mcp.server.apps import Apps

__all__ = ["APP_META", "APP_URI", "production_app"]

APP_URI = "ui://movie-orchestrator/production.html"
# `ui/resourceUri` is the flat key hosts read before the extension settled on `ui.resourceUri`.
APP_META: dict[str, Any] = {"ui": {"resourceUri": APP_URI}, "ui/resourceUri": APP_URI}


def production_app() -> Apps:
    """The Apps extension with the production view registered."""
    apps = Apps()
    html = resources.files("server.mcp").joinpath("app.html").read_text(encoding="utf-8")
    apps.add_html_resource(
        APP_URI,
        html,
        name="production",
        title="Production",
        description="A production's status, progress and pending decisions, answered in place.",
        prefers_border=True,
    )
    return apps
