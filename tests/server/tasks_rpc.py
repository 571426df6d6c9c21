"""A raw JSON-RPC client of the MCP Tasks extension (2026-07-28), written from the specification alone.

It shares nothing with the server's code or the SDK: plain httpx, the envelope and headers the
specification describes, and a transcript of every exchange (the README's example is one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
