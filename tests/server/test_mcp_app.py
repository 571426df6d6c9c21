"""The production view as an MCP App: advertised, linked from the tools, served as a ui:// resource."""

from __future__ import annotations

from mcp import Client

from server import Orchestrator
from server.mcp import APP_URI
from tests.server.conftest import structured


async def test_start_and_status_point_at_the_production_app(orch: Orchestrator) -> None:
    """The extension is advertised; start_workflow and get_status carry _meta.ui.resourceUri; the
    resource is the app's HTML with the MCP Apps MIME type; results for other clients are unchanged."""
    async with Client(orch.mcp) as c:
        assert "io.modelcontextprotocol/ui" in (c.server_capabilities.extensions or {})
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for name in ("start_workflow", "get_status"):
            meta = tools[name].meta or {}
            assert meta["ui"]["resourceUri"] == APP_URI, name
        assert "ui" not in (tools["submit_decision"].meta or {})
        read = await c.read_resource(APP_URI)
        content = read.contents[0]
        assert content.mime_type == "text/html;profile=mcp-app"
        html = getattr(content, "text", "")
        assert "ui/initialize" in html
        assert "submit_decision" in html
        started = structured(await c.call_tool("start_workflow", {"project_id": "proj-a"}))
        assert started["workflow_id"].startswith("wf-")
        status = structured(await c.call_tool("get_status", {"workflow_id": started["workflow_id"]}))
        assert status["project_id"] == "proj-a"
