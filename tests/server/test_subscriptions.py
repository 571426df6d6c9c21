"""Resource subscriptions across two instances on one Redis: a change through A notifies a session on B."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
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


@pytest.mark.parametrize("transport", ["ws", "http-legacy"])
async def test_handshake_subscribe_on_b(pair: tuple[Orchestrator, Orchestrator, str], transport: str) -> None:
    """A handshake-era session on B (resources/subscribe) gets notifications/resources/updated: on the
    WebSocket, or, over HTTP, on the GET stream the SDK's client opens with the session id it was issued."""
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
        async with connect(b, transport, key, message_handler=on_message) as cb:
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


async def _start_preview(a: Orchestrator, brief: str) -> str:
    async with Client(a.mcp) as ca:
        started = await ca.call_tool(
            "start_workflow", {"project_id": "p", "workflow": "preview", "brief": brief}
        )
    return str(structured(started)["workflow_id"])


async def test_listen_over_http_on_b_hears_changes_made_on_a(
    pair: tuple[Orchestrator, Orchestrator, str],
) -> None:
    """2026-07-28 subscriptions/listen over Streamable HTTP (answered as a stream) gets the updates."""
    a, b, key = pair
    wid = await _start_preview(a, "z")
    uri = f"workflow://{wid}/state"
    async with connect(b, "http", key) as cb, cb.listen(resource_subscriptions=[uri]) as sub:
        seen: list[str] = []
        with anyio.fail_after(20):
            async for event in sub:
                seen.append(str(event.uri))  # type: ignore[union-attr]
                if (
                    structured(await cb.call_tool("get_status", {"workflow_id": wid}))["status"]
                    == "completed"
                ):
                    break
    assert seen
    assert set(seen) == {uri}


_HTTP = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}


async def _rpc(http: httpx.AsyncClient, url: str, method: str, params: dict[str, Any], **headers: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return await http.post(url, json=body, headers={**_HTTP, **headers})


async def test_handshake_subscribe_over_http_is_delivered_on_the_get_stream_of_any_instance(
    pair: tuple[Orchestrator, Orchestrator, str],
) -> None:
    """initialize issues an Mcp-Session-Id; resources/subscribe with it on one instance, the GET stream of
    the session on another, a change made on a third path: the update arrives; DELETE ends the stream."""
    a, b, key = pair
    wid = await _start_preview(a, "w")
    uri = f"workflow://{wid}/decisions"
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        opened = await _rpc(http, f"{b.http_url}/mcp", "initialize", init)
        sid = opened.headers["mcp-session-id"]
        subscribed = await _rpc(
            http, f"{a.http_url}/mcp", "resources/subscribe", {"uri": uri}, **{"mcp-session-id": sid}
        )
        assert subscribed.json()["result"] == {}
        got: list[dict[str, Any]] = []
        stream_headers = {"accept": "text/event-stream", "mcp-session-id": sid}
        async with http.stream("GET", f"{b.http_url}/mcp", headers=stream_headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith(":")  # the stream is open: changes from now on are sent
            async with Client(a.mcp) as ca:
                await ca.call_tool("pause_workflow", {"workflow_id": wid})
            with anyio.fail_after(10):
                async for line in lines:
                    if line.startswith("data:"):
                        got.append(json.loads(line[5:]))
                        break
            ended = await http.delete(f"{a.http_url}/mcp", headers={"mcp-session-id": sid})
            assert ended.status_code == 200
            with anyio.fail_after(10):
                async for _ in lines:
                    pass  # the session ended on another instance: the stream closes
    assert got == [{"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}]


async def test_subscribe_over_http_without_a_session_is_refused(
    pair: tuple[Orchestrator, Orchestrator, str],
) -> None:
    """Without a session there is nowhere to deliver: resources/subscribe and the GET stream say so."""
    a, b, key = pair
    wid = await _start_preview(a, "v")
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        refused = (
            await _rpc(http, f"{b.http_url}/mcp", "resources/subscribe", {"uri": f"workflow://{wid}/state"})
        ).json()
        stale = await _rpc(
            http,
            f"{b.http_url}/mcp",
            "resources/subscribe",
            {"uri": f"workflow://{wid}/state"},
            **{"mcp-session-id": "nope"},
        )
        get = await http.get(f"{b.http_url}/mcp", headers={"accept": "text/event-stream"})
        unknown = await http.get(
            f"{b.http_url}/mcp", headers={"accept": "text/event-stream", "mcp-session-id": "nope"}
        )
    assert refused["error"]["code"] == types.INVALID_REQUEST
    assert "Mcp-Session-Id" in refused["error"]["message"]
    assert stale.json()["error"]["code"] == types.INVALID_REQUEST
    assert get.status_code == 405
    assert unknown.status_code == 404
