"""A waiting get_status keeps its caller company: progress a person can read and the workflow's notable
events as log messages, on every transport and in both protocol generations."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from adapters import Status, WorkflowRecord
from server import Orchestrator, Settings
from server.mcp import describe, event_log
from tests.server.clients import BOTH_ERAS, connect, stdio_client
from tests.server.conftest import OpenOrchestrator, structured, wait_status


class Heard:
    """Progress and log notifications one client received."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, str]] = []
        self.logs: list[tuple[str, Any]] = []

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, message or ""))

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append((params.level, params.data))


def _readable(heard: Heard) -> None:
    assert heard.progress, "no progress notification"
    for _, message in heard.progress:
        assert message
        assert not message.startswith(("step.", "run.", "agent.", "workflow.", "updated"))
    assert any(": " in m for _, m in heard.progress)


@pytest.mark.parametrize("transport", BOTH_ERAS)
async def test_waiting_get_status_streams_progress(served: tuple[Orchestrator, str], transport: str) -> None:
    """get_status(wait_seconds) with a progress token sends readable progress, HTTP included (as SSE)."""
    orch, key = served
    heard = Heard()
    async with connect(orch, transport, key, logging_callback=heard.on_log, log_level="info") as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview",
                                                              "brief": "a lighthouse"}))["workflow_id"]  # fmt: skip
        st = await wait_status(c, wid, {"completed", "failed"}, progress_callback=heard.on_progress)
    assert st["status"] == "completed"
    _readable(heard)
    percents = [p for p, _ in heard.progress]
    assert percents == sorted(percents)
    if not heard.progress[0][1].startswith("completed"):
        # The wait began before the end (the event log is read before the record), so it heard the end.
        assert any("completed" in str(data) for level, data in heard.logs if level == "info"), heard.logs


async def test_progress_and_logs_over_stdio(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """The stdio transport (a subprocess) streams the same progress, in both generations."""
    for mode in ("legacy", "auto"):
        heard = Heard()
        async with stdio_client(redis_url, key_prefix, tmp_path / mode, mode=mode,
                                logging_callback=heard.on_log, log_level="info") as c:  # fmt: skip
            wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview",
                                                                  "brief": mode}))["workflow_id"]  # fmt: skip
            st = await wait_status(c, wid, {"completed", "failed"}, progress_callback=heard.on_progress)
        assert st["status"] == "completed"
        _readable(heard)
        if not heard.progress[0][1].startswith("completed"):
            assert heard.logs, mode


async def test_no_token_no_progress_and_plain_json(served: tuple[Orchestrator, str]) -> None:
    """Without a progress token nothing is streamed: the HTTP answer stays one JSON body."""
    import httpx2

    orch, key = served
    async with Client(orch.mcp) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "get_status", "arguments": {"workflow_id": wid, "wait_seconds": 0.5}}}  # fmt: skip
    hdr = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18",
           "Authorization": f"Bearer {key}"}  # fmt: skip
    async with httpx2.AsyncClient(base_url=orch.http_url, timeout=30) as http:
        plain = await http.post("/mcp", json=body, headers=hdr)
        assert plain.headers["content-type"].startswith("application/json")
        assert plain.json()["result"]["structuredContent"]["workflow_id"] == wid
        body["params"]["_meta"] = {"progressToken": "t1"}  # type: ignore[index]
        streamed = await http.post("/mcp", json=body, headers=hdr)
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert '"notifications/progress"' in streamed.text
        assert wid in streamed.text


async def test_log_level_filters_and_setlevel_answers_empty(served: tuple[Orchestrator, str]) -> None:
    """logging/setLevel answers {} (handshake era) and raises the bar for a session's log messages."""
    orch, key = served
    heard = Heard()
    async with connect(orch, "ws", key, logging_callback=heard.on_log) as c:
        caps = c.server_capabilities
        assert caps is not None
        assert caps.logging is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = await c.session.set_logging_level("error")
        assert result.model_dump(exclude_none=True) == {}
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
        await wait_status(c, wid, {"completed", "failed"}, progress_callback=Heard().on_progress)
    assert all(level in {"error", "critical", "alert", "emergency"} for level, _ in heard.logs)


async def test_per_request_log_level_of_2026(served: tuple[Orchestrator, str]) -> None:
    """At 2026-07-28 the request's own level decides: two waits on the same decision being answered, the
    one at 'error' hears nothing of it, the one at 'info' hears the answer."""
    orch, key = served
    quiet, chatty = Heard(), Heard()
    started = [anyio.Event(), anyio.Event()]
    async with (
        connect(orch, "http", key, logging_callback=quiet.on_log, log_level="error") as cq,
        connect(orch, "http", key, logging_callback=chatty.on_log, log_level="info") as cc,
    ):
        wid = structured(await cq.call_tool("start_workflow", {"project_id": "p", "options": {"scenes": 1}}))[
            "workflow_id"
        ]
        with anyio.fail_after(60):
            st = structured(await cq.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 30,
                                                              "until": ["waiting_decision"]}))  # fmt: skip
        assert st["status"] == "waiting_decision"

        async def wait(c: Client, ready: anyio.Event) -> None:
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                ready.set()

            await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 30, "until": ["running"]},
                              progress_callback=on_progress)  # fmt: skip

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, cq, started[0])
                tg.start_soon(wait, cc, started[1])
                for ready in started:
                    await ready.wait()
                decision = st["pending_decisions"][0]
                await cq.call_tool("submit_decision", {"workflow_id": wid, "decision_id": decision["id"],
                                                       "choice": decision["options"][0]})  # fmt: skip
        await cq.call_tool("cancel_workflow", {"workflow_id": wid})
    assert any("answered" in str(data) for level, data in chatty.logs if level == "info"), chatty.logs
    assert all(level in {"error", "critical", "alert", "emergency"} for level, _ in quiet.logs)
    assert not any("answered" in str(data) for _, data in quiet.logs)


def test_descriptions_read_like_sentences() -> None:
    """A record becomes one readable line; notable events get a level and words."""
    rec = WorkflowRecord(id="wf-1", project_id="p", workflow="movie_production", status=Status.RUNNING,
                         created_at=0, updated_at=0, phase="character_development", message="developing Ada",
                         agents_running=["character_creator", "voice_designer"])  # fmt: skip
    assert describe(rec) == (
        "character_development: developing Ada (2 agents at work: character creator, voice designer)"
    )
    rec.status, rec.pending = Status.WAITING_DECISION, [{"question": "Which concept?"}]
    assert describe(rec) == "waiting for your decision: Which concept?"
    assert event_log("step.failed", {"step": "keyframe", "error": "boom"}) == (
        "error", "step keyframe failed: boom")  # fmt: skip
    assert event_log("service.waiting", {"reason": "waiting for brain: circuit open"})[0] == "warning"  # type: ignore[index]
    assert event_log("agent.transient", {"agent": "x", "detail": "timeout"})[1].endswith("retry scheduled")  # type: ignore[index]
    failed = {"agent": "video_generator", "service": "task-service", "operation": "generate_video", "step": "scene.0",
              "reason": "'Context' object has no attribute 'started_at'", "next": "trying alternative animatic_builder"}  # fmt: skip
    assert event_log("agent.failed", failed) == ("warning", "video_generator failed (task-service generate_video: "
                                                 "'Context' object has no attribute 'started_at'); trying alternative "
                                                 "animatic_builder")  # fmt: skip
    assert event_log("decision.requested", {"decisions": ["d1"]})[0] == "notice"  # type: ignore[index]
    assert event_log("step.started", {"step": "x"}) is None


async def test_progress_on_an_instance_that_runs_nothing(
    open_orch: OpenOrchestrator, served: tuple[Orchestrator, str], settings: Settings
) -> None:
    """Stateless and multi-instance: a wait on instance B (no engine) streams the progress of a run on A."""
    a, _ = served
    settings_b = settings.model_copy(update={"instance_id": settings.instance_id + "-b"})
    async with open_orch(engine=False, base=settings_b) as b:
        assert b.keys is not None
        key_b, _ = await b.keys.create("watcher-b", ["*"], "read")
        async with Client(a.mcp) as ca:
            wid = structured(await ca.call_tool("start_workflow", {"project_id": "p", "workflow": "preview",
                                                                   "brief": "two towers"}))["workflow_id"]  # fmt: skip
        heard = Heard()
        async with connect(b, "http", key_b, logging_callback=heard.on_log, log_level="info") as cb:
            st = await wait_status(cb, wid, {"completed", "failed"}, progress_callback=heard.on_progress)
    assert st["status"] == "completed"
    _readable(heard)
