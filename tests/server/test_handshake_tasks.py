"""The 2025-11-25 experimental tasks (handshake era): params.task, tasks/get, tasks/result, tasks/list,
tasks/cancel, decisions asked on tasks/result; and what is refused before anything starts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server import Orchestrator
from tests.server.conftest import OpenOrchestrator, structured
from tests.server.test_tasks_extension import TasksClient

RELATED = "io.modelcontextprotocol/related-task"
_START = {"project_id": "p", "brief": "a fox", "options": {"scenes": 1, "characters": 1}}


def _as_task(name: str, arguments: dict[str, Any]) -> types.CallToolRequest:
    return types.CallToolRequest(
        params=types.CallToolRequestParams(
            name=name, arguments=arguments, task=types.TaskMetadata(ttl=60_000)
        )
    )


async def _workflows(orch: Orchestrator) -> set[str]:
    async with Client(orch.mcp) as c:
        page = structured(await c.call_tool("list_workflows", {"limit": 200}))
    return {w["workflow_id"] for w in page["workflows"]}


async def test_a_2025_11_25_client_is_told_of_the_tasks_and_the_tools_that_take_them(
    orch: Orchestrator,
) -> None:
    """capabilities.tasks on initialize, execution.taskSupport "optional" on the three task tools."""
    async with Client(orch.mcp, mode="legacy") as client:
        caps = client.server_capabilities.tasks
        assert caps is not None
        assert caps.model_dump(by_alias=True, exclude_none=True) == {
            "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}
        }  # fmt: skip
        tools = {t.name: t for t in (await client.list_tools()).tools}
    marked = {
        n for n, t in tools.items() if t.execution is not None and t.execution.task_support == "optional"
    }
    assert marked == {"start_workflow", "fork_workflow", "retry_step"}
    async with Client(orch.mcp) as modern:
        assert modern.server_capabilities.tasks is None


class Rpc:
    """A raw 2025-11-25 JSON-RPC client over stateless Streamable HTTP (written from the draft, no SDK)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.next_id = 0

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request answered as one JSON body."""
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        resp = await self.http.post(self.url, json=body, headers=_HEADERS)
        if resp.headers["content-type"].startswith("text/event-stream"):
            frames = [
                json.loads(line[5:])
                for line in resp.text.splitlines()
                if line.startswith("data:") and line[5:].strip()
            ]
            answer = next(f for f in frames if f.get("id") == self.next_id)
        else:
            answer = resp.json()
        if "error" in answer:
            raise MCPError.from_error_data(types.ErrorData.model_validate(answer["error"]))
        return dict(answer["result"])

    async def stream(
        self, method: str, params: dict[str, Any], on_request: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A request answered as an SSE stream: (its result, the other messages it carried). Server
        requests on it are answered with `on_request(message)`, POSTed back (to `self.url`)."""
        self.next_id += 1
        rid = self.next_id
        body = {"jsonrpc": "2.0", "id": rid, "method": method,
                "params": {**params, "_meta": {"progressToken": f"p{rid}"}}}  # fmt: skip
        seen: list[dict[str, Any]] = []
        async with self.http.stream("POST", self.url, json=body, headers=_HEADERS) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if not line.startswith("data:") or not line[5:].strip():
                    continue
                message = json.loads(line[5:])
                if message.get("id") == rid:
                    if "error" in message:
                        raise MCPError.from_error_data(types.ErrorData.model_validate(message["error"]))
                    return message["result"], seen
                seen.append(message)
                if "method" in message and "id" in message:
                    answer = {"jsonrpc": "2.0", "id": message["id"], "result": await on_request(message)}
                    posted = await self.http.post(self.url, json=answer, headers=_HEADERS)
                    assert posted.status_code == 202
        raise AssertionError(f"{method}: the stream ended without a result")


_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}


async def test_a_production_as_a_task_over_http_decisions_answered_on_another_instance(
    served: tuple[Orchestrator, str], open_orch: OpenOrchestrator
) -> None:
    """params.task answers a CreateTaskResult (id = workflow id); tasks/result streams progress and asks
    each decision (related-task _meta) on its own stream; the answers, POSTed to another instance, are
    recorded there; the result is the tool's, valid against its outputSchema."""
    orch, key = served
    asked: list[str] = []

    async def person(message: dict[str, Any]) -> dict[str, Any]:
        assert message["method"] == "elicitation/create"
        asked.append(message["params"]["_meta"][RELATED]["taskId"])
        choice = message["params"]["requestedSchema"]["properties"]["choice"]
        return {"action": "accept", "content": {"choice": choice.get("default") or choice["enum"][0]}}

    other_settings = orch.settings.model_copy(update={"instance_id": f"{orch.settings.instance_id}-b"})
    async with (
        open_orch(engine=False, base=other_settings) as other,
        httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http,
    ):
        a, b = Rpc(http, f"{orch.http_url}/mcp"), Rpc(http, f"{other.http_url}/mcp")
        tools = {t["name"]: t for t in (await a.request("tools/list", {}))["tools"]}
        created = await a.request(
            "tools/call", {"name": "start_workflow", "arguments": _START, "task": {"ttl": 60_000}}
        )
        wid = created["task"]["taskId"]
        assert created["task"]["status"] == "working"
        assert isinstance(created["task"]["ttl"], int)
        assert (await b.request("tasks/get", {"taskId": wid}))["taskId"] == wid

        async def via_b(message: dict[str, Any]) -> dict[str, Any]:
            answer = await person(message)
            b_answer = {"jsonrpc": "2.0", "id": message["id"], "result": answer}
            assert (await http.post(b.url, json=b_answer, headers=_HEADERS)).status_code == 202
            return answer

        result, seen = await a.stream("tasks/result", {"taskId": wid}, via_b)
        done = await b.request("tasks/get", {"taskId": wid})
    jsonschema.validate(result["structuredContent"], tools["start_workflow"]["outputSchema"])
    assert result["structuredContent"]["status"] == "completed"
    assert result["_meta"][RELATED] == {"taskId": wid}
    assert asked == [wid, wid], "both decisions asked, each naming its task"
    assert any(m.get("method") == "notifications/progress" for m in seen)
    assert done["status"] == "completed"
    assert {d["by"] for d in (await orch.store.decisions(wid)).values()} == {"tester"}


async def test_tasks_list_and_cancel(served: tuple[Orchestrator, str]) -> None:
    """tasks/list pages the caller's workflows as tasks; tasks/cancel cancels one and refuses a finished one;
    tasks/result of a cancelled task is an error result naming it."""
    orch, key = served
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
        rpc = Rpc(http, f"{orch.http_url}/mcp")
        created = await rpc.request("tools/call", {"name": "start_workflow", "arguments": _START, "task": {}})
        wid = created["task"]["taskId"]
        listed = await rpc.request("tasks/list", {})
        assert wid in [t["taskId"] for t in listed["tasks"]]
        assert all(isinstance(t["ttl"], int) for t in listed["tasks"])
        cancelled = await rpc.request("tasks/cancel", {"taskId": wid})
        assert cancelled["status"] == "cancelled"
        with pytest.raises(MCPError) as again:
            await rpc.request("tasks/cancel", {"taskId": wid})
        assert again.value.error.code == types.INVALID_PARAMS
        payload = await rpc.request("tasks/result", {"taskId": wid})
        assert payload["isError"] is True
        assert payload["_meta"][RELATED] == {"taskId": wid}
        with pytest.raises(MCPError) as unknown:
            await rpc.request("tasks/get", {"taskId": "wf-0000000000000000"})
        assert unknown.value.error.code == types.INVALID_PARAMS
        with pytest.raises(MCPError) as bad_cursor:
            await rpc.request("tasks/list", {"cursor": "nonsense"})
        assert bad_cursor.value.error.code == types.INVALID_PARAMS
    assert (await orch.store.get(wid)).status == "cancelled"  # type: ignore[union-attr]


async def test_what_is_not_served_is_refused_before_anything_starts(orch: Orchestrator) -> None:
    """params.task on a tool without task support, from a modern client without the extension, at an older
    protocol, or with arguments the tool refuses: a JSON-RPC error and no workflow."""
    before = await _workflows(orch)
    async with Client(orch.mcp, mode="legacy") as legacy:
        with pytest.raises(MCPError) as forbidden:
            await legacy.session.send_request(_as_task("list_workflows", {}), types.CreateTaskResult)
        assert forbidden.value.error.code == types.METHOD_NOT_FOUND
        bad = {**_START, "options": {"scenes": 10_000}}
        with pytest.raises(MCPError) as refused:
            await legacy.session.send_request(_as_task("start_workflow", bad), types.CreateTaskResult)
        assert refused.value.error.code == types.INVALID_PARAMS
        assert "scenes" in refused.value.error.message
    async with Client(orch.mcp) as modern:
        with pytest.raises(MCPError) as undeclared:
            await modern.session.send_request(_as_task("start_workflow", _START), types.CallToolResult)
        assert "declare the extension" in undeclared.value.error.message
    async with Client(orch.mcp, extensions=[TasksClient()]) as declared:
        # A client that declared the extension gets a task it can see, params.task or not.
        handle = await declared.session.call_tool("start_workflow", _START, allow_claimed=True)
        assert getattr(handle, "task_id", "").startswith("wf-")
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "start_workflow", "arguments": _START, "task": {"ttl": 1000}}}  # fmt: skip
    key, _ = await orch.keys.create("older", ["*"], "admin")
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}) as http:
        answer = (await http.post(f"{orch.http_url}/mcp", json=call, headers=headers)).json()
    assert answer["error"]["code"] == types.INVALID_PARAMS
    assert "2025-11-25" in answer["error"]["message"]
    assert await _workflows(orch) - before == {handle.task_id}  # type: ignore[union-attr]
