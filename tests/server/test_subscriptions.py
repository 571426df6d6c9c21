"""Resource subscriptions across two instances on one Redis: a change through A notifies a session on B."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server import Orchestrator, Sandbox, Settings
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, structured


@pytest.fixture
async def pair(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings
) -> AsyncIterator[tuple[Orchestrator, Orchestrator, str]]:
    """Instance A runs workflows; instance B only serves MCP; both share Redis and the key prefix."""
    settings_b = settings.model_copy(update={"instance_id": settings.instance_id + "-b"})
    async with (
        open_orch(sandbox=standins) as a,
        open_orch(engine=False, base=settings_b) as b,
    ):
        assert b.keys is not None
        key, _ = await b.keys.create("watcher", ["*"], "read")
        yield a, b, key


async def test_listen_on_b_hears_changes_made_on_a(pair: tuple[Orchestrator, Orchestrator, str]) -> None:
    """2026-07-28 subscriptions/listen on B gets resource updates for a workflow started and run on A."""
    a, b, _ = pair
    async with Client(a.mcp) as ca:
        wid = structured(await ca.call_tool("start_workflow", {"project_id": "p", "workflow": "preview",
                                                               "brief": "x"}))["workflow_id"]  # fmt: skip
    uri = f"workflow://{wid}/state"
    async with Client(b.mcp) as cb, cb.listen(resource_subscriptions=[uri]) as sub:
        seen: list[str] = []
        with anyio.fail_after(20):
            async for event in sub:
                seen.append(str(event.uri))  # type: ignore[union-attr]
                status = structured(await cb.call_tool("get_status", {"workflow_id": wid}))
                if status["status"] == "completed":
                    break
    assert seen
    assert set(seen) == {uri}


async def test_handshake_subscribe_over_websocket_on_b(pair: tuple[Orchestrator, Orchestrator, str]) -> None:
    """A handshake-era session on B (WebSocket, resources/subscribe) gets notifications/resources/updated."""
    a, b, key = pair
    got: list[str] = []
    done = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            got.append(str(message.params.uri))
            done.set()

    async with Client(a.mcp) as ca:
        wid = structured(await ca.call_tool("start_workflow", {"project_id": "p", "workflow": "preview",
                                                               "brief": "y"}))["workflow_id"]  # fmt: skip
        async with connect(b, "ws", key, message_handler=on_message) as cb:
            caps = cb.server_capabilities
            assert caps.resources is not None
            assert caps.resources.subscribe
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await cb.session.subscribe_resource(f"workflow://{wid}/decisions")
            # a change made through A: pausing writes the record and publishes
            await ca.call_tool("pause_workflow", {"workflow_id": wid})
            with anyio.fail_after(10):
                await done.wait()
    assert got[0] == f"workflow://{wid}/decisions"


async def test_subscribing_to_a_hidden_workflow_is_refused(
    pair: tuple[Orchestrator, Orchestrator, str],
) -> None:
    """A key of another project cannot subscribe to a workflow it cannot see."""
    a, b, _ = pair
    assert b.keys is not None
    other, _ = await b.keys.create("other", ["elsewhere"], "admin")
    async with Client(a.mcp) as ca:
        wid = structured(await ca.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
    async with connect(b, "ws", other) as cb:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(MCPError, match="unknown resource"):
                await cb.session.subscribe_resource(f"workflow://{wid}/state")
