"""`make demo`: a complete production on this machine, driven through a real MCP client over stdio."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp import Client, StdioServerParameters
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Prompt
from rich.table import Table

from adapters import TERMINAL, Status
from server.core import outside_failures
from server.sandbox import DEMO_PROJECT_ID

if TYPE_CHECKING:
    from server.process._assembly import Orchestrator

__all__ = ["board_link", "run_demo", "write_board_access"]

DEMO_PROJECT = DEMO_PROJECT_ID  # the Auto-Movie stand-in seeds it (an ObjectId, as the app's are)


async def write_board_access(orch: Orchestrator, path: Path) -> None:
    """For the demo: a decide key of the demo project and the board's address, in a file only the
    user can read (the demo prints them as one link)."""
    assert orch.keys is not None
    key, _ = await orch.keys.create("demo-board", [DEMO_PROJECT], "decide", ttl_days=1)
    body = json.dumps({"url": orch.http_url, "key": key})

    def write() -> None:
        path.touch(mode=0o600)
        path.write_text(body)

    await asyncio.to_thread(write)


def board_link(board_file: Path, wid: str) -> str:
    """The board link of the demo's production: its address, the workflow, and the key in the fragment."""
    try:
        access = json.loads(board_file.read_text())
    except (OSError, ValueError):
        return ""
    # The key rides in the fragment, which the browser never sends; the page moves it to session storage.
    return f"{access['url']}/#/w/{wid}&key={access['key']}"


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(text)
    data: dict[str, Any] = result.structured_content or {}
    return data


def _options(workflow: str, scenes: int) -> dict[str, Any]:
    """The demo's options, kept to those the workflow takes (each workflow refuses options it has not)."""
    from graphs import WORKFLOWS

    wanted = {"scenes": scenes, "characters": 3}
    known = WORKFLOWS[workflow].options.model_fields if workflow in WORKFLOWS else wanted
    return {k: v for k, v in wanted.items() if k in known}


def _choose(decision: dict[str, Any], console: Console, interactive: bool) -> str:
    options = decision.get("options") or []
    default = str(decision.get("context", {}).get("recommended") or (options[0] if options else "approve"))
    if not interactive:
        console.print(f"  [cyan]decision[/] {decision['question']} → auto-answered [bold]{default}[/]")
        return default
    console.print(f"\n[bold cyan]{decision['question']}[/]")
    return Prompt.ask("  your choice", choices=options or None, default=default, console=console)


def _server(args: argparse.Namespace) -> tuple[StdioServerParameters, Path, Path]:
    """How the demo starts the server (over stdio, with the stand-ins), its data folder and its log file."""
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="mo-demo-")) / "redis"
    log_file = data_dir.parent / "server.log"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The stand-ins keep the real services' defects (status before webhook, failing video, stuck rows); the
    # Task Service's ~6 s between a job's status and its webhook is shortened to 1 s for a quick demo.
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info", "LOG_FILE": str(log_file),
           "TASK_POLL_SECONDS": "1", "SANDBOX_WEBHOOK_DELAY_SECONDS": "1"}  # fmt: skip
    env.pop("REDIS_URL", None)
    argv = ["-m", "server", "serve", "--sandbox", "--data-dir", str(data_dir),
            "--board-file", str(data_dir.parent / "board.json")]  # fmt: skip
    return StdioServerParameters(command=sys.executable, args=argv, env=env), data_dir, log_file


async def run_demo(args: argparse.Namespace) -> int:
    """Start the server over stdio with the sandbox stand-ins and run one production to the end."""
    console = Console(stderr=False)
    started = time.monotonic()
    params, data_dir, log_file = _server(args)
    console.rule("[bold]movie-orchestrator demo")
    console.print(f"server: [dim]{' '.join(params.args)}[/] (stdio, embedded Redis in {data_dir})")
    async with Client(params, mode="legacy") as client:
        tools = await client.list_tools()
        console.print(
            f"connected over MCP stdio; {len(tools.tools)} tools: {', '.join(t.name for t in tools.tools)}"
        )
        wid = await _start(client, args, console)
        board = board_link(data_dir.parent / "board.json", wid)
        if board:
            console.print(f"production board: [link={board}]{board}[/link]", soft_wrap=True)
        if args.board:
            console.print("[cyan]answer the decisions on the board[/] (this terminal only watches)")
        status, decisions = await _follow(client, wid, args, console)
        media_dir = data_dir.parent / "media"
        failures = await _failures(client, wid)
        console.print(_summary(status, wid, args, decisions=decisions, media_dir=media_dir, log_file=log_file,
                               elapsed=time.monotonic() - started, failures=failures))  # fmt: skip
        if args.board and board:
            console.print(f"\nthe board stays up: [link={board}]{board}[/link]\nCtrl-C stops the server.",
                          soft_wrap=True)  # fmt: skip
            await asyncio.Event().wait()
    return 0 if status.get("status") == Status.COMPLETED else 1


async def _start(client: Client, args: argparse.Namespace, console: Console) -> str:
    start = _structured(
        await client.call_tool(
            "start_workflow",
            {
                "project_id": DEMO_PROJECT,
                "workflow": args.workflow,
                "brief": "A lighthouse keeper finds a map that redraws itself every night.",
                "idempotency_key": f"demo-{int(time.time())}",
                "options": _options(args.workflow, args.scenes),
            },
        )
    )
    wid = str(start["workflow_id"])
    console.print(f"started [bold]{wid}[/] ({args.workflow})")
    return wid


async def _follow(
    client: Client, wid: str, args: argparse.Namespace, console: Console
) -> tuple[dict[str, Any], int]:
    """Follow the production to its end with a progress bar, answering its decisions; (last status, answered)."""
    decisions = 0
    columns = (TextColumn("[bold]{task.fields[phase]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[msg]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("run", total=100, phase=Status.QUEUED.value, msg="")
        while True:
            status = _structured(
                await client.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 5})
            )
            progress.update(bar, completed=status["percent"], phase=status["phase"] or status["status"],
                            msg=status["message"][:60])  # fmt: skip
            if status["status"] in TERMINAL:
                return status, decisions
            if status["status"] == Status.WAITING_DECISION and args.board:
                progress.update(bar, msg="waiting for your answer on the board")
            elif status["status"] == Status.WAITING_DECISION:
                progress.stop()
                for d in status["pending_decisions"]:
                    choice = _choose(d, console, args.interactive)
                    _structured(await client.call_tool(
                        "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": choice}
                    ))  # fmt: skip
                    decisions += 1
                progress.start()


async def _failures(client: Client, wid: str) -> list[str]:
    """What failed outside and what was done about it, one line per kind (from the workflow's events)."""
    result = await client.read_resource(f"workflow://{wid}/events")
    events = json.loads(getattr(result.contents[0], "text", "") or "[]")
    return [f.line() for f in outside_failures(events if isinstance(events, list) else [])]


def _summary(
    status: dict[str, Any], wid: str, args: argparse.Namespace, *, decisions: int, media_dir: Path,
    log_file: Path, elapsed: float, failures: list[str] | None = None,
) -> Table:  # fmt: skip
    """The table the demo ends with: what was made, by how many agents and calls, where the files are."""
    files = sorted(p for p in media_dir.rglob("*") if p.is_file() and not p.name.endswith(".json.tmp"))
    kinds: dict[str, int] = {}
    for f in files:
        kinds[f.suffix or "?"] = kinds.get(f.suffix or "?", 0) + 1
    result = status.get("result") or {}
    table = Table(
        title=f"Production {wid}: {status.get('status')} ({result.get('outcome', '')})", show_header=False
    )
    rows = [
        ("workflow", args.workflow),
        ("status", str(status.get("status"))),
        ("phases", ", ".join(result.get("phases", [])) or str(status.get("phase"))),
        ("concept", str(result.get("concept", ""))),
        ("story", f"score {result.get('story_score')} after {result.get('revisions', 0)} revision(s)"),
        (
            "agents run",
            f"{result.get('agent_executions', 0)} executions of {result.get('distinct_agents', 0)} agents",
        ),
        ("outside calls", ", ".join(f"{k}: {v}" for k, v in (result.get("outside_calls") or {}).items())),
        ("characters / scenes", f"{result.get('characters', 0)} / {result.get('scenes', 0)}"),
        ("scene clips made by", ", ".join(result.get("scene_clips_by", []))),
        ("decisions answered", "on the board" if args.board else str(decisions)),
        ("media files", f"{len(files)} (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"),
        ("writer calls", f"{result.get('writer_calls', 0)} (local deterministic writer)"),
        ("files are in", str(media_dir)),
        ("server log", str(log_file)),
        ("time taken", f"{elapsed:.1f}s"),
    ]
    rows += [("outside failure" if i == 0 else "", line[:300]) for i, line in enumerate((failures or [])[:6])]
    if status.get("last_error"):
        rows.append(("last error", status["last_error"][:300]))
    for row in rows:
        table.add_row(*row)
    return table
