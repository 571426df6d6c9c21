"""A raw JSON-RPC client of the MCP Tasks extension (2026-07-28), written from the specification alone.

It shares nothing with the server's code or the SDK: plain httpx, the envelope and headers the
specification describes, and a transcript of every exchange (the README's example is one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROTOCOL = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code: int = error["code"]
        self.message: str = error.get("message", "")
        self.data: Any = error.get("data")


@dataclass
class RawTasksClient:
    """POSTs one JSON-RPC request per call to ``<url>/mcp``, stateless (2026-07-28)."""

    url: str
    http: httpx.AsyncClient
    declare_tasks: bool = True
    bearer: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int = 0

    def _meta(self) -> dict[str, Any]:
        caps: dict[str, Any] = {"extensions": {TASKS: {}}} if self.declare_tasks else {}
        return {
            "io.modelcontextprotocol/protocolVersion": PROTOCOL,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-tasks-client", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": caps,
        }

    async def request(self, method: str, params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """Send one request; returns its result, raises RpcError for an error answer."""
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method,
                "params": {**params, "_meta": self._meta()}}  # fmt: skip
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL,
                   "Mcp-Method": method}  # fmt: skip
        if name is not None:
            headers["Mcp-Name"] = name
        if self.bearer is not None:
            headers["Authorization"] = f"Bearer {self.bearer}"
        resp = await self.http.post(f"{self.url}/mcp", json=body, headers=headers)
        answer = _answer(resp, self._next_id)
        self.transcript.append({"instance": self.url, "request": body, "response": answer})
        if "error" in answer:
            raise RpcError(answer["error"])
        result: dict[str, Any] = answer["result"]
        return result

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """tools/call (the answer may be a CallToolResult or, with the extension, a CreateTaskResult)."""
        return await self.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)

    async def get(self, task_id: str) -> dict[str, Any]:
        """tasks/get."""
        return await self.request("tasks/get", {"taskId": task_id}, name=task_id)

    async def update(self, task_id: str, responses: dict[str, Any]) -> dict[str, Any]:
        """tasks/update with inputResponses."""
        return await self.request(
            "tasks/update", {"taskId": task_id, "inputResponses": responses}, name=task_id
        )

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """tasks/cancel."""
        return await self.request("tasks/cancel", {"taskId": task_id}, name=task_id)


def _answer(resp: httpx.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC answer to `request_id`, from a JSON body or an SSE stream."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if msg.get("id") == request_id:
                    return dict(msg)
        msg = f"no answer to request {request_id} in the event stream (HTTP {resp.status_code})"
        raise AssertionError(msg)
    data = resp.json()
    assert isinstance(data, dict), data
    return data


def render(path: str) -> str:
    """A recorded transcript (MO_TASKS_TRANSCRIPT) as the README's markdown: runs of working polls folded."""
    data = json.loads(Path(path).read_text())
    names = {data["alpha"]: "instance A", data["beta"]: "instance B"}
    out: list[str] = []
    exchanges = data["exchanges"]
    i = 0
    while i < len(exchanges):
        ex = exchanges[i]
        req, resp = dict(ex["request"]), dict(ex["response"])
        status = resp.get("result", {}).get("status")
        run = i
        while (
            req["method"] == "tasks/get"
            and status == "working"
            and run + 1 < len(exchanges)
            and exchanges[run + 1]["request"]["method"] == "tasks/get"
            and exchanges[run + 1]["response"].get("result", {}).get("status") == "working"
        ):
            run += 1
        if i > 0:
            req["params"] = {k: v for k, v in req["params"].items() if k != "_meta"}
        result = resp.get("result")
        if isinstance(result, dict):
            resp["result"] = _trim({k: v for k, v in result.items() if k != "_meta" or i == 0})
        # The first exchange and the ones that carry payloads are shown in full, the rest on one line.
        full = i == 0 or status in {"input_required", "completed", "failed"}
        where = names.get(ex["instance"], ex["instance"])
        req_text = json.dumps(req, indent=1 if i == 0 else None, ensure_ascii=False)
        out.append(f"→ {where}\n```json\n{req_text}\n```")
        out.append(f"←\n```json\n{json.dumps(resp, indent=1 if full else None, ensure_ascii=False)}\n```")
        if run > i:
            messages = [
                exchanges[k]["response"]["result"].get("statusMessage") for k in range(i + 1, run + 1)
            ]
            distinct = list(dict.fromkeys(m for m in messages if m))
            out.append(f"({run - i} more `tasks/get` answered `working`; their statusMessages: "
                       + "; ".join(f"“{m}”" for m in distinct) + ")")  # fmt: skip
        i = run + 1
    return "\n\n".join(out)


def _trim(result: dict[str, Any]) -> dict[str, Any]:
    """Shorten the completed result's long per-agent table and raw summary (marked as shortened)."""
    sc = result.get("result", {}).get("structuredContent")
    if isinstance(sc, dict):
        by_agent = sc.get("agent_executions", {}).get("by_agent", {})
        if len(by_agent) > 4:
            kept = dict(list(by_agent.items())[:4])
            kept["…"] = f"{len(by_agent) - 4} more agents (shortened for the README)"
            sc["agent_executions"]["by_agent"] = kept
        for key in ("summary", "result"):
            if key in sc:
                sc[key] = "(the workflow's summary record, as in get_status.result; shortened for the README)"
    return result


if __name__ == "__main__":
    import sys

    print(render(sys.argv[1]))
