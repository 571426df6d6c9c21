"""Drive one production with LangChain 1.5's `langchain.mcp` (beta; FastMCP 4 client, 2026-07-28) inside a LangGraph
graph: get_status(wait, until completed) answers an input-required result per open decision, the adapter raises it
as a LangGraph interrupt (type 'mcp_elicitation'), and the driver resumes with Command(resume={'responses': ...}).
  python langchain_mcp_production.py --url http://127.0.0.1:PORT/mcp
  python langchain_mcp_production.py --cmd '["python","-m","server","serve","--sandbox","--data-dir","D"]'
One JSON line on stdout; exit 0 when completed.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from typing import Any, TypedDict

from langchain_core._api import LangChainBetaWarning

warnings.filterwarnings("ignore", category=LangChainBetaWarning)

from fastmcp.client.transports import StdioTransport  # noqa: E402
from langchain.mcp import MCPAdapter  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--url")
p.add_argument("--cmd")
p.add_argument("--deadline", type=float, default=120)
a = p.parse_args()
TERMINAL = ("completed", "failed", "cancelled")


class State(TypedDict, total=False):
    workflow_id: str
    status: str


def build(tools: dict[str, Any]):
    async def start(state: State) -> State:
        msg = await tools["start_workflow"].ainvoke(
            {
                "name": "start_workflow",
                "id": "s",
                "type": "tool_call",
                "args": {
                    "project_id": "demo-project",
                    "brief": "a lighthouse keeper",
                    "options": {"scenes": 1, "characters": 1},
                },
            }
        )
        return {"workflow_id": msg.artifact["structured_content"]["workflow_id"]}

    async def follow(state: State) -> State:
        msg = await tools["get_status"].ainvoke(
            {
                "name": "get_status",
                "id": "g",
                "type": "tool_call",
                "args": {"workflow_id": state["workflow_id"], "wait_seconds": 20, "until": list(TERMINAL)},
            }
        )
        return {"status": msg.artifact["structured_content"]["status"]}

    g = StateGraph(State)
    g.add_node("start", start)
    g.add_node("follow", follow)
    g.add_edge(START, "start")
    g.add_edge("start", "follow")
    g.add_conditional_edges("follow", lambda s: END if s["status"] in TERMINAL else "follow")
    return g.compile(checkpointer=InMemorySaver())


async def main() -> dict:
    s = {
        "client": "langchain.mcp-1.5.2/fastmcp-4",
        "transport": "http" if a.url else "stdio",
        "protocol": None,
        "workflow_id": None,
        "status": None,
        "interrupts": [],
        "errors": [],
        "seconds": None,
    }
    if a.url:
        target: Any = a.url
    else:
        cmd = json.loads(a.cmd)
        target = StdioTransport(
            command=cmd[0],
            args=cmd[1:],
            cwd="/tmp",
            env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")},
        )
    adapter = MCPAdapter(target)
    async with adapter:
        s["protocol"] = adapter.client.protocol_version
        graph = build({t.name: t for t in await adapter.list_tools()})
        config = {"configurable": {"thread_id": "production"}, "recursion_limit": 200}
        t0 = time.monotonic()
        out = await graph.ainvoke({}, config)
        while "__interrupt__" in out and time.monotonic() - t0 < a.deadline:
            intr = out["__interrupt__"][0].value
            answers = {
                r["key"]: {
                    "action": "accept",
                    "content": {"choice": r["requested_schema"]["properties"]["choice"]["default"]},
                }
                for r in intr["requests"]
            }
            s["interrupts"].append(
                [intr["type"], intr["tool_name"], [r["message"][-60:] for r in intr["requests"]]]
            )
            out = await graph.ainvoke(Command(resume={"responses": answers}), config)
        s.update(
            workflow_id=out.get("workflow_id"),
            status=out.get("status"),
            seconds=round(time.monotonic() - t0, 2),
        )
    return s


try:
    summary = asyncio.run(main())
except Exception as e:
    summary = {"client": "langchain.mcp", "status": None, "errors": [repr(e)[:500]]}
print(json.dumps(summary))
sys.exit(0 if summary.get("status") == "completed" and not summary.get("errors") else 1)
