"""Drive one production with langchain-mcp-adapters 0.3.2 (run with the SEPARATE venv: it needs mcp<2).

  --usage oneshot : MultiServerMCPClient(...).get_tools(), the default documented usage: every tool call opens a new
                    session (stdio: a new server process; HTTP: initialize + call + DELETE).
  --usage session : one long-lived `client.session()` for the whole production (the baseline for the 2 s budget).
Decisions are answered with submit_decision (adapters 0.3.2 never asks inline: no elicitation callback by default).
Prints one JSON line: status, client wall time from start_workflow to completed, and the production's own duration
as the server recorded it (completed get_status updated_at - created_at). With --startup-samples N (oneshot), first
times N calls of list_agents before the production and N after, each a process of its own that does no waiting:
the start-up (and exit) of one server process as this usage pays it, reported as startup_seconds (median),
beside processes_during_production.
  python langchain_adapters_production.py --transport stdio --cmd '["python","-m","server","serve","--sandbox","--data-dir","D"]'
  python langchain_adapters_production.py --transport http --url http://127.0.0.1:PORT/mcp --usage session
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from contextlib import AsyncExitStack

from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

p = argparse.ArgumentParser()
p.add_argument("--transport", default="http", choices=["http", "stdio"])
p.add_argument("--url")
p.add_argument("--cmd")
p.add_argument("--usage", default="oneshot", choices=["oneshot", "session"])
p.add_argument("--deadline", type=float, default=180)
p.add_argument("--startup-samples", type=int, default=0)
a = p.parse_args()


def connection() -> dict:
    if a.transport == "http":
        return {"transport": "streamable_http", "url": a.url}
    cmd = json.loads(a.cmd)
    return {
        "transport": "stdio",
        "command": cmd[0],
        "args": cmd[1:],
        "cwd": "/tmp",
        "env": {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")},
    }


async def call(tools, name, args):
    msg = await tools[name].ainvoke({"name": name, "args": args, "id": name, "type": "tool_call"})
    if msg.status == "error":
        raise RuntimeError(f"{name}: {msg.content}")
    return msg.artifact["structured_content"]


def choose(d: dict) -> str:
    opts = d.get("options") or []
    return (d.get("context") or {}).get("recommended") or next(
        (o for o in opts if o not in ("more", "reject")), opts[0]
    )


async def main() -> dict:
    s = {
        "client": "langchain-mcp-adapters-0.3.2",
        "transport": a.transport,
        "usage": a.usage,
        "workflow_id": None,
        "status": None,
        "submitted": 0,
        "tool_calls": 0,
        "errors": [],
        "client_seconds": None,
        "production_seconds": None,
        "calls": [],
    }
    client = MultiServerMCPClient({"mo": connection()})
    async with AsyncExitStack() as stack:
        if a.usage == "session":
            session = await stack.enter_async_context(client.session("mo"))
            tools = {t.name: t for t in await load_mcp_tools(session)}
        else:
            tools = {t.name: t for t in await client.get_tools()}

        async def timed(name, args):
            t = time.monotonic()
            try:
                return await call(tools, name, args)
            finally:
                s["tool_calls"] += 1
                s["calls"].append([name, round(time.monotonic() - t, 2)])

        samples: list[float] = []

        async def sample_startups() -> None:
            for _ in range(a.startup_samples):
                t = time.monotonic()
                await call(tools, "list_agents", {"phase": "story"})
                samples.append(time.monotonic() - t)

        await sample_startups()
        t0 = time.monotonic()
        started = await timed(
            "start_workflow",
            {
                "project_id": "demo-project",
                "brief": "a lighthouse keeper",
                "options": {"scenes": 1, "characters": 1},
            },
        )
        s["workflow_id"] = wid = started["workflow_id"]
        while time.monotonic() - t0 < a.deadline:
            st = await timed(
                "get_status",
                {
                    "workflow_id": wid,
                    "wait_seconds": 20,
                    "until": ["completed", "failed", "cancelled", "waiting_decision"],
                },
            )
            s["status"] = st["status"]
            if st["status"] in ("completed", "failed", "cancelled"):
                s["production_seconds"] = round(st["updated_at"] - st["created_at"], 2)
                break
            for d in st["pending_decisions"] if st["status"] == "waiting_decision" else []:
                await timed(
                    "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": choose(d)}
                )
                s["submitted"] += 1
        s["client_seconds"] = round(time.monotonic() - t0, 2)
        # Every call after start_workflow is a process started (and ended) while the production runs.
        s["processes_during_production"] = len(s["calls"]) - 1 if a.usage == "oneshot" else 0
        await sample_startups()  # before and after the production: the machine's load drifts
        if samples:
            s["startup_seconds"] = round(statistics.median(samples), 2)
            s["startup_samples"] = [round(x, 2) for x in samples]
    return s


try:
    summary = asyncio.run(main())
except Exception as e:
    summary = {"client": "langchain-mcp-adapters-0.3.2", "status": None, "errors": [repr(e)[:500]]}
print(json.dumps(summary))
sys.exit(0 if summary.get("status") == "completed" and not summary.get("errors") else 1)
