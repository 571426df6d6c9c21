"""The auth matrix over real HTTP and WebSocket: keys missing, wrong, expired, revoked, of another project;
each role against each tool."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from server import Orchestrator
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, error_text, structured

TOOLS_BY_ROLE = {
    "get_status": "read",
    "list_workflows": "read",
    "list_agents": "read",
    "start_workflow": "operate",
    "pause_workflow": "operate",
    "resume_workflow": "operate",
    "cancel_workflow": "operate",
    "retry_step": "operate",
    "fork_workflow": "operate",
    "submit_decision": "decide",
}
ROLES = ["read", "operate", "decide", "admin"]


async def _audit(orch: Orchestrator) -> list[tuple[str, dict[str, Any], bytes]]:
    """The security audit stream: (what, data, raw bytes of the entry)."""
    r: Any = orch.redis
    rows = await r.xrange(f"{orch.settings.key_prefix}:audit")
    return [(e[b"what"].decode(), json.loads(e[b"data"]), b"".join(e.values())) for _, e in rows]


async def _rpc(url: str, key: str | None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-06-18"}  # fmt: skip
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/mcp", json=body, headers=headers)


async def test_http_refuses_missing_wrong_expired_and_revoked_keys(front_door: Orchestrator) -> None:
    """No key, a wrong key, an expired key and a revoked key all get 401; every refusal is audited."""
    keys = front_door.keys
    assert keys is not None
    good, _ = await keys.create("ok", ["*"], "read")
    expired, _ = await keys.create("old", ["*"], "read", ttl_days=1e-9)
    revoked, _ = await keys.create("gone", ["*"], "read")
    assert await keys.revoke("gone")
    await anyio.sleep(0.01)
    for key, reason in [(None, "missing key"), ("mo_bad_key", "unknown key"), (expired, "expired key"),
                        (revoked, "revoked key")]:  # fmt: skip
        resp = await _rpc(front_door.http_url, key)
        assert resp.status_code == 401, (key, resp.text)
        assert reason in resp.json()["message"]
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert (await _rpc(front_door.http_url, good)).status_code == 200
    audit = await _audit(front_door)
    whats = [what for what, _, _ in audit]
    assert whats.count("auth.failed") == 4
    assert {"key.created", "key.revoked"} <= set(whats)
    for _, _, raw in audit:  # keys never reach the audit log
        for secret in (good, expired, revoked):
            assert secret.encode() not in raw


async def test_websocket_upgrade_requires_a_valid_key(front_door: Orchestrator) -> None:
    """The /ws upgrade with no key or a wrong key is closed as a policy violation before any MCP traffic."""
    url = front_door.http_url.replace("http://", "ws://") + "/ws"

    async def attempt(headers: dict[str, str]) -> None:
        async with ws_connect(url, subprotocols=[Subprotocol("mcp")], additional_headers=headers) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            await ws.recv()

    for headers in ({}, {"Authorization": "Bearer mo_nope"}):
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            await attempt(headers)


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_another_projects_workflow_is_not_found(front_door: Orchestrator, transport: str) -> None:
    """A key scoped to project A sees B's workflows as unknown (never "forbidden") and cannot list them."""
    keys = front_door.keys
    assert keys is not None
    admin, _ = await keys.create("admin", ["*"], "admin")
    scoped, _ = await keys.create("a-only", ["proj-a"], "admin")
    async with connect(front_door, transport, admin) as c:
        b = structured(await c.call_tool("start_workflow", {"project_id": "proj-b", "workflow": "preview"}))
    async with connect(front_door, transport, scoped) as c:
        text = error_text(await c.call_tool("get_status", {"workflow_id": b["workflow_id"]}))
        assert "not_found" in text
        assert "forbidden" not in text.lower()
        assert "not_found" in error_text(
            await c.call_tool("cancel_workflow", {"workflow_id": b["workflow_id"]})
        )
        assert "not_found" in error_text(await c.call_tool("start_workflow", {"project_id": "proj-b",
                                                                              "workflow": "preview"}))  # fmt: skip
        listed = structured(await c.call_tool("list_workflows", {}))
        assert b["workflow_id"] not in {w["workflow_id"] for w in listed["workflows"]}
        with pytest.raises(MCPError, match="unknown workflow"):
            await c.read_resource(f"workflow://{b['workflow_id']}/state")
        a = structured(await c.call_tool("start_workflow", {"project_id": "proj-a", "workflow": "preview"}))
        assert (
            structured(await c.call_tool("get_status", {"workflow_id": a["workflow_id"]}))["project_id"]
            == "proj-a"
        )


def _args(tool: str, wid: str) -> dict[str, Any]:
    return {
        "get_status": {"workflow_id": wid},
        "list_workflows": {},
        "list_agents": {},
        "start_workflow": {"project_id": "p", "workflow": "preview"},
        "pause_workflow": {"workflow_id": wid},
        "resume_workflow": {"workflow_id": wid},
        "cancel_workflow": {"workflow_id": wid},
        "retry_step": {"workflow_id": wid},
        "fork_workflow": {"workflow_id": wid, "checkpoint_id": "00000000-0000-0000-0000-000000000000"},
        "submit_decision": {"workflow_id": wid, "decision_id": "d", "choice": "x"},
    }[tool]


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_against_each_tool(front_door: Orchestrator, role: str) -> None:
    """A role below a tool's need gets permission_denied; at or above it passes the role check."""
    keys = front_door.keys
    assert keys is not None
    admin, _ = await keys.create("admin", ["*"], "admin")
    key, _ = await keys.create(f"k-{role}", ["*"], role)
    async with connect(front_door, "http", admin) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
    async with connect(front_door, "http", key) as c:
        for tool, needed in TOOLS_BY_ROLE.items():
            result = await c.call_tool(tool, _args(tool, wid))
            allowed = ROLES.index(role) >= ROLES.index(needed)
            text = "" if not result.is_error else error_text(result)
            if allowed:
                assert "permission_denied" not in text, (role, tool, text)
            else:
                assert "permission_denied" in text, (role, tool, text)
                assert needed in text
    denied = [data for what, data, _ in await _audit(front_door) if what == "access.denied"]
    expected = sum(1 for needed in TOOLS_BY_ROLE.values() if ROLES.index(role) < ROLES.index(needed))
    assert len([d for d in denied if d.get("caller") == f"k-{role}"]) == expected


async def test_no_auth_serves_loopback_without_keys(open_orch: OpenOrchestrator) -> None:
    """--no-auth (loopback development) serves MCP without a key."""
    async with open_orch(engine=False, auth=False) as orch:
        assert (await _rpc(orch.http_url, None)).status_code == 200
