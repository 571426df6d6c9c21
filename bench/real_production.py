"""One default-size `movie_production` against the REAL Task Service, driven over MCP as a producer would.

Issue 21's definition of done, as a tool. It starts the Brain and Auto-Movie stand-ins (`movie-orchestrator
sandbox`; or the real Brain with ``--brain-url``) and one `movie-orchestrator serve --http` pointed at the
Task Service given by ``TASK_SERVICE_URL``/``TASK_SERVICE_API_KEY``. The Task Service must be able to call
this machine back on 127.0.0.1 (webhooks). The production is not auto-approved: every decision is answered
with ``submit_decision`` (the recommended choice) through the SDK's Client over Streamable HTTP.

It reports (and writes as JSON with ``--out``): the outcome and its duration; the jobs the service holds for
the run's project, by type and by status; duplicates (service jobs no step of ours recorded, and steps
that submitted more than once); webhooks by outcome and ``webhook.refused`` audit entries; every outside
failure with its reason and what followed; and whether each deliverable the service produced carries the
URL it returned.

    TASK_SERVICE_URL=http://127.0.0.1:8521 TASK_SERVICE_API_KEY=local-task-key \\
        .venv/bin/python -m bench.real_production [--brain-url ws://127.0.0.1:8522] [--out run.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.concurrency import _process, _sandbox_env
from server.core import outside_failures

__all__ = ["main", "run"]

BRIEF = "A lighthouse keeper finds a map that redraws itself every night."


async def _resource(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    return json.loads(getattr(result.contents[0], "text", "") or "null")


async def _drive(client: Client, project: str) -> tuple[str, dict[str, Any], list[str]]:
    """Start the production and answer its decisions until it ends; (workflow id, last status, answers)."""
    started = await client.call_tool("start_workflow", {"project_id": project, "workflow": "movie_production",
                                                        "brief": BRIEF})  # fmt: skip
    wid = str((started.structured_content or {})["workflow_id"])
    answers: list[str] = []
    while True:
        result = await client.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 30,
                                                       "until": ["waiting_decision", "completed", "failed", "cancelled"]})  # fmt: skip
        st: dict[str, Any] = dict(result.structured_content or {})
        print(
            f"  {time.strftime('%H:%M:%S')} {st['status']:<17} {st['percent']:5.1f}% {st['message'][:70]}",
            flush=True,
        )
        if st["status"] in {"completed", "failed", "cancelled"}:
            return wid, st, answers
        for d in st["pending_decisions"] if st["status"] == "waiting_decision" else []:
            choice = str(d["context"].get("recommended") or d["options"][0])
            await client.call_tool(
                "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": choice}
            )
            answers.append(f"{d['question']} -> {choice}")


# Log events worth counting in a run against the real service.
_COUNTED = ("jobs.ended_before_webhook", "jobs.submit_outcome_unknown", "jobs.reconciled",
            "task_service.resent_after_drop", "brain.dialect_fallback", "webhook.refused")  # fmt: skip


def _log_jobs(log_file: Path) -> tuple[list[dict[str, Any]], set[str], dict[str, int]]:
    """The submissions our server logged, every job id it recorded (submitted or found by reconciling), and
    how often the notable events happened."""
    submitted, known, counted = [], set(), Counter[str]()
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        event = entry.get("event")
        if event == "jobs.submitted":
            submitted.append(entry)
        if event in {"jobs.submitted", "jobs.reconciled"} and entry.get("task_id"):
            known.add(str(entry["task_id"]))
        if event in _COUNTED:
            counted[event] += 1
    return submitted, known, {k: counted[k] for k in _COUNTED}


async def _service_tasks(url: str, key: str, project: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with httpx2.AsyncClient(
        base_url=f"{url.rstrip('/')}/api/v1", headers={"X-API-Key": key}, timeout=30
    ) as http:
        page = 1
        while True:
            data = (await http.get(f"/projects/{project}/tasks", params={"page": page, "limit": 100})).json()
            rows += data["tasks"]
            if page >= int(data["pagination"]["total_pages"] or 1):
                return rows
            page += 1


def _made_by_service(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, job id, URL) of every deliverable a Task Service job produced, from the final state."""
    out = []
    for c in values.get("character_results", []):
        for part in ("portrait", "voice"):
            v = c.get(part) or {}
            if v.get("task_id"):
                out.append((f"character {c['name']} {part}", str(v["task_id"]), str(v.get("result_url"))))
    for s in values.get("scene_results", []):
        for part in ("image", "clip", "dialogue_audio"):
            v = s.get(part) or {}
            if v.get("task_id"):
                out.append((f"scene {s['index']} {part}", str(v["task_id"]), str(v.get("result_url"))))
    for name, v in {
        **(values.get("visual") or {}),
        **(values.get("audio") or {}),
        **(values.get("post") or {}),
    }.items():
        if isinstance(v, dict) and v.get("task_id") and v.get("result_url"):
            out.append((name, str(v["task_id"]), str(v["result_url"])))
    return out


async def _figures(client: Client, http: httpx2.AsyncClient, wid: str, server: str) -> dict[str, Any]:
    events = await _resource(client, f"workflow://{wid}/events")
    checkpoints = await _resource(client, f"workflow://{wid}/checkpoints")
    newest = checkpoints["checkpoints"][0]["checkpoint_id"]
    values = (await _resource(client, f"workflow://{wid}/checkpoints/{newest}"))["values"]
    audit = await _resource(client, "security://audit")
    metrics = (await http.get(f"{server}/metrics")).text
    webhooks = {line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines() if line.startswith("mo_webhooks_total{")}  # fmt: skip
    refused_audit = [e for e in audit if e.get("what") == "webhook.refused"]
    made = _made_by_service(values)
    return {
        "failures": [f.line() for f in outside_failures(events)],
        "webhooks": webhooks,
        "refused_webhooks": sum(v for k, v in webhooks.items() if k.startswith("refused")),
        "webhook_refused_audit_entries": len(refused_audit),
        "service_deliverables": len(made),
        "service_deliverables_with_their_url": sum(1 for _, tid, u in made if u.startswith("http") and tid in u),
        "deliverables": {k: v for k, v in (values.get("deliverables") or {}).items() if k in
                         {"characters", "scene_images", "scene_clips", "mix"}},
        "service_urls": [u for _, _, u in made][:4],
    }  # fmt: skip


async def run(
    task_url: str, task_key: str, *, brain_url: str = "", out: Path | None = None
) -> dict[str, Any]:
    """Run one production against the Task Service at `task_url`; returns the report."""
    tmp = Path(tempfile.mkdtemp(prefix="mo-real-"))
    base = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    # The Brain and Auto-Movie stand-ins alone; their Task Service is not used.
    sandbox_args = ["sandbox", "--data-dir", str(tmp / "sandbox" / "d"), "--webhook-delay", "0"]
    async with _process(sandbox_args, base, "AUTO_MOVIE_URL=") as (_, lines):
        stand_ins = _sandbox_env(lines)
        env = {**base, **{k: v for k, v in stand_ins.items() if k.startswith(("AUTO_MOVIE", "PAYLOAD", "BRAIN"))},
               "TASK_SERVICE_URL": task_url, "TASK_SERVICE_API_KEY": task_key, "LOG_FILE": str(tmp / "server.log")}  # fmt: skip
        if brain_url:
            env["BRAIN_URL"] = brain_url
        headers = {"Authorization": f"Bearer {stand_ins['AUTO_MOVIE_TOKEN']}"}
        async with httpx2.AsyncClient(
            base_url=stand_ins["AUTO_MOVIE_URL"], headers=headers, timeout=30
        ) as am:
            created = await am.post(
                "/api/v1/projects", json={"title": "Real run", "genre": "scifi", "episodeCount": 1}
            )
            project = str(created.json()["id"])
        serve_args = [
            "serve",
            "--http",
            "127.0.0.1:0",
            "--no-auth",
            "--data-dir",
            str(tmp / "server" / "redis"),
        ]
        async with _process(serve_args, env, "listening on") as (_, served):
            server = (
                next(line for line in served if "listening on" in line)
                .split("listening on ")[1]
                .split("/mcp")[0]
            )
            t0, started_at = time.monotonic(), dt.datetime.now(dt.UTC)
            async with (
                httpx2.AsyncClient(timeout=120) as http,
                Client(streamable_http_client(f"{server}/mcp", http_client=http)) as client,
            ):
                wid, status, answers = await _drive(client, project)
                seconds = time.monotonic() - t0
                figures = await _figures(client, http, wid, server)
    submitted, known, counted = _log_jobs(tmp / "server.log")
    tasks = await _service_tasks(task_url, task_key, project)
    per_step = Counter(str(e.get("step")) for e in submitted)
    return {
        "date": started_at.isoformat(timespec="seconds"), "workflow_id": wid, "project_id": project,
        "status": status["status"], "outcome": (status.get("result") or {}).get("outcome"),
        "last_error": status.get("last_error", ""), "seconds": round(seconds, 1), "decisions": answers,
        "brain": brain_url or "stand-in", "story_score": (status.get("result") or {}).get("story_score"),
        "jobs": len(tasks),
        "jobs_by_type": dict(Counter(t["task_type"] for t in tasks)),
        "jobs_by_listed_status": dict(Counter(t["status"] for t in tasks)),
        "submitted_by_us": len(submitted),
        "duplicates": {"service_jobs_unknown_to_us": sorted({t["task_id"] for t in tasks} - known),
                       "steps_submitted_more_than_once": {k: n for k, n in per_step.items() if n > 1}},
        **figures, "log_events": counted, "server_log": str(tmp / "server.log"),
    }  # fmt: skip


def main() -> int:
    """Command line: the Task Service from the environment; prints the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--brain-url", default="", help="a real Brain (ws://host:port); default: the stand-in"
    )
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    url, key = os.environ.get("TASK_SERVICE_URL", ""), os.environ.get("TASK_SERVICE_API_KEY", "")
    if not url:
        print("set TASK_SERVICE_URL (and TASK_SERVICE_API_KEY) to the real Task Service", file=sys.stderr)
        return 2
    report = asyncio.run(run(url, key, brain_url=args.brain_url))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    ok = report["status"] == "completed" and not report["duplicates"]["service_jobs_unknown_to_us"]
    return 0 if ok and not report["refused_webhooks"] else 1


if __name__ == "__main__":
    sys.exit(main())
