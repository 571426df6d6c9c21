"""The production board's HTTP side: keys and roles, project scope, operations, the live stream."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import anyio
import httpx

from server import Caller, Orchestrator, Settings
from server.process import board_link, write_board_access
from server.sandbox import DEMO_PROJECT_ID
from server.web.board import node_states, picture, timeline
from tests.server.conftest import OpenOrchestrator


async def _keys(orch: Orchestrator) -> dict[str, str]:
    assert orch.keys is not None
    return {
        role: (await orch.keys.create(f"board-{role}", ["proj-a"], role))[0]
        for role in ("read", "operate", "decide")
    } | {"other": (await orch.keys.create("board-other", ["proj-b"], "decide"))[0]}


def _http(orch: Orchestrator, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=orch.http_url, headers=headers, timeout=30)


async def _waiting(orch: Orchestrator, wid: str) -> Any:
    return await orch.service.wait_status(Caller(), wid, 60, until=["waiting_decision", "failed"])


async def test_the_page_is_open_but_its_data_needs_a_key(orch: Orchestrator) -> None:
    """`/` is a shell with no data and a strict CSP; every /board/api call without a valid key is 401."""
    async with _http(orch, None) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'id="key"' in page.text
        assert (await http.get("/board/static/board.js")).status_code == 200
        for path in ("/board/api/whoami", "/board/api/productions", "/board/api/stream"):
            assert (await http.get(path)).status_code == 401, path
    async with _http(orch, "mo_nope_nope") as http:
        assert (await http.get("/board/api/productions")).status_code == 401


async def test_roles_and_project_scope_shape_what_the_board_shows(orch: Orchestrator) -> None:
    """A read key sees the decision but no answer button and no operations; a decide key gets both;
    a key of another project sees neither the production in the list nor its page, nor its files."""
    keys = await _keys(orch)
    started = await orch.service.start_workflow(
        Caller(), project_id="proj-a", options={"scenes": 1, "characters": 1}
    )
    wid = started.workflow_id
    await _waiting(orch, wid)
    async with _http(orch, keys["read"]) as http:
        who = (await http.get("/board/api/whoami")).json()
        assert who == {"name": "board-read", "role": "read", "projects": ["proj-a"],
                       "can_decide": False, "can_operate": False}  # fmt: skip
        assert wid in (await http.get("/board/api/productions")).text
        assert wid in (await http.get("/board/api/productions?status=waiting_decision")).text
        assert wid not in (await http.get("/board/api/productions?status=completed")).text
        assert wid not in (await http.get("/board/api/productions?project=proj-b")).text
        bad = (await http.get("/board/api/productions?status=nope")).text
        assert 'data-error="invalid_argument"' in bad
        assert "status" in bad
        page = (await http.get(f"/board/api/w/{wid}")).text
        assert "Which concept" in page
        assert "data-decide=" not in page
        assert "data-op=" not in page
        assert "data-fork=" not in page
        assert "cannot answer" in page
        refused = await http.post(f"/board/api/w/{wid}/decide", json={"decision_id": "x", "choice": "y"})
        assert refused.status_code == 403
        assert refused.json()["error"] == "permission_denied"
    async with _http(orch, keys["decide"]) as http:
        page = (await http.get(f"/board/api/w/{wid}")).text
        assert "data-decide=" in page
        assert 'data-op="pause"' in page
        assert "data-fork=" in page
    async with _http(orch, keys["other"]) as http:
        listing = (await http.get("/board/api/productions")).text
        assert wid not in listing
        assert "No productions" in listing
        page = (await http.get(f"/board/api/w/{wid}")).text
        assert "proj-a" not in page
        assert 'data-error="not_found"' in page
        assert (await http.get(f"/board/api/w/{wid}/file/manifest.json")).status_code == 404
        answer = await http.post(f"/board/api/w/{wid}/decide", json={"decision_id": "x", "choice": "y"})
        assert answer.status_code == 404
        assert (await http.post(f"/board/api/w/{wid}/op/cancel")).status_code == 404


async def test_operations_go_through_the_service_and_are_audited(orch: Orchestrator) -> None:
    """Pause, resume and cancel from the board change the workflow and land in its event log under the
    key's name; an unknown operation names the allowed ones."""
    keys = await _keys(orch)
    wid = (await orch.service.start_workflow(Caller(), project_id="proj-a")).workflow_id
    await _waiting(orch, wid)
    async with _http(orch, keys["operate"]) as http:
        paused = await http.post(f"/board/api/w/{wid}/op/pause")
        assert paused.status_code == 200
        assert paused.json()["status"] == "paused"
        assert (await http.post(f"/board/api/w/{wid}/op/resume")).json()["status"] == "queued"
        cancelled = await http.post(f"/board/api/w/{wid}/op/cancel")
        assert cancelled.json()["status"] == "cancelled"
        bad = await http.post(f"/board/api/w/{wid}/op/explode")
        assert bad.status_code == 400
        assert "'pause'" in bad.json()["message"]
        again = await http.post(f"/board/api/w/{wid}/op/pause")
        assert again.status_code == 409
    events = await orch.service.events(Caller(), wid)
    mine = [e["what"] for e in events if e["who"] == "board-operate"]
    assert mine[:3] == ["workflow.pause_requested", "workflow.paused", "workflow.resumed"]
    assert "workflow.cancelled" in mine


async def test_the_page_shows_what_failed_outside_with_the_services_reason_and_what_followed(
    orch: Orchestrator,
) -> None:
    """The Task Service's video fails in every scene: the production page names the service, the job type,
    the step, its reason and the alternative that took over (as get_status's events do)."""
    keys = await _keys(orch)
    options = {"scenes": 2, "characters": 1, "auto_approve": True}
    wid = (await orch.service.start_workflow(Caller(), project_id="proj-a", options=options)).workflow_id
    done = await orch.service.wait_status(Caller(), wid, 60, until=["completed", "failed"])
    assert done.status == "completed", done.last_error
    async with _http(orch, keys["read"]) as http:
        page = (await http.get(f"/board/api/w/{wid}")).text
    assert "Outside services failed" in page
    shown = r'task-service</strong> generate_video at step <code>scene\.\d</code> <span class="muted">\u00d72</span>'
    assert re.search(shown, page)
    assert "&#39;Context&#39; object has no attribute &#39;started_at&#39;" in page
    assert "next: trying alternative animatic_builder" in page
    assert "brain</strong> store_knowledge" in page


async def test_answering_on_the_board_resumes_the_production(orch: Orchestrator) -> None:
    """A decide key's answer is recorded under its name and the production moves on; the answer is
    refused when it is not one of the options."""
    keys = await _keys(orch)
    wid = (await orch.service.start_workflow(Caller(), project_id="proj-a")).workflow_id
    decision = (await _waiting(orch, wid)).pending_decisions[0]
    async with _http(orch, keys["decide"]) as http:
        wrong = await http.post(
            f"/board/api/w/{wid}/decide", json={"decision_id": decision.id, "choice": "?"}
        )
        assert wrong.status_code == 400
        assert "is not one of" in wrong.json()["message"]
        ok = await http.post(
            f"/board/api/w/{wid}/decide",
            json={"decision_id": decision.id, "choice": decision.options[0], "comment": "from the board"},
        )
        assert ok.json()["decided_by"] == "board-decide"
    answered = await orch.service.decisions(Caller(), wid)
    assert answered["answered"][decision.id]["choice"] == decision.options[0]


async def test_the_stream_tells_a_page_of_changes_to_its_productions_only(orch: Orchestrator) -> None:
    """The live stream carries a change of a visible production within a second or so, and nothing of
    another project's."""
    keys = await _keys(orch)
    seen: list[dict[str, Any]] = []
    async with _http(orch, keys["read"]) as http, http.stream("GET", "/board/api/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry:")
        other = await orch.service.start_workflow(Caller(), project_id="proj-b")
        mine = await orch.service.start_workflow(Caller(), project_id="proj-a")
        with anyio.fail_after(20):
            async for line in lines:
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:]))
                    if seen[-1]["workflow_id"] == mine.workflow_id:
                        break
    assert {s["workflow_id"] for s in seen} == {mine.workflow_id}
    assert other.workflow_id not in {s["workflow_id"] for s in seen}


async def test_a_change_made_through_another_instance_reaches_the_stream(
    open_orch: OpenOrchestrator, settings: Settings
) -> None:
    """Neither instance runs workflows: B (no HTTP port) starts a production and cancels it; the page
    streaming from A hears of both, only through Redis."""
    seen: list[str] = []
    other = settings.model_copy(update={"instance_id": "instance-b"})
    async with (
        open_orch(engine=False) as a,
        open_orch(engine=False, http=False, base=other) as b,
    ):
        keys = await _keys(a)
        async with _http(a, keys["read"]) as http, http.stream("GET", "/board/api/stream") as stream:
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            wid = (await b.service.start_workflow(Caller(), project_id="proj-a")).workflow_id
            with anyio.fail_after(20):
                async for line in lines:
                    if line.startswith("data:") and json.loads(line[5:])["workflow_id"] == wid:
                        seen.append(json.loads(line[5:])["status"])
                        if seen == ["queued"]:
                            await b.service.cancel(Caller(), wid)
                        elif seen[-1] == "cancelled":
                            break
    assert (seen[0], seen[-1]) == ("queued", "cancelled")


async def test_fork_from_a_checkpoint_starts_a_new_production(orch: Orchestrator) -> None:
    """The board's fork makes a new production of the same project from the chosen checkpoint; a bad
    checkpoint id is refused naming the field."""
    keys = await _keys(orch)
    wid = (await orch.service.start_workflow(Caller(), project_id="proj-a")).workflow_id
    await _waiting(orch, wid)
    checkpoint = (await orch.service.checkpoints(Caller(), wid)).checkpoints[-1].checkpoint_id
    async with _http(orch, keys["operate"]) as http:
        bad = await http.post(f"/board/api/w/{wid}/fork", json={"checkpoint_id": "../x"})
        assert bad.status_code == 400
        assert "checkpoint_id" in bad.json()["message"]
        forked = await http.post(f"/board/api/w/{wid}/fork", json={"checkpoint_id": checkpoint})
        assert forked.status_code == 200
        new = forked.json()["workflow_id"]
    assert new != wid
    status = await orch.service.get_status(Caller(), new)
    assert (status.project_id, status.forked_from) == ("proj-a", f"{wid}@{checkpoint}")


def test_the_graph_is_drawn_from_the_compiled_graph_and_coloured_from_step_events() -> None:
    """Every node of the compiled graph is in the drawing; step events make done / running / failed /
    waiting, and a decision marks the step it stopped."""
    drawing = picture("movie_production")
    assert "choose_concept" in drawing.nodes
    assert all(f'data-node="{n}"' in drawing.svg for n in drawing.nodes)
    events = [
        {"what": "step.started", "when": 1.0, "data": {"step": "a"}},
        {"what": "step.finished", "when": 2.0, "data": {"step": "a"}},
        {"what": "step.started", "when": 2.0, "data": {"step": "b"}},
        {"what": "step.started", "when": 2.0, "data": {"step": "c"}},
        {"what": "step.failed", "when": 3.0, "data": {"step": "c", "error": "boom"}},
    ]
    assert node_states(events, "running") == {"a": "done", "b": "running", "c": "failed", "__start__": "done"}
    assert node_states(events, "waiting_decision", "a")["a"] == "waiting"
    assert node_states(events, "paused")["b"] == "waiting"
    rows = timeline(events)
    assert [(r["step"], r["runs"], r["failed"]) for r in rows] == [("a", 1, 0), ("b", 1, 0), ("c", 1, 1)]
    assert rows[1]["end"] is None


async def test_the_demo_link_opens_the_board_with_a_decide_key_of_the_demo_project(
    orch: Orchestrator, tmp_path: Path
) -> None:
    """The demo's access file is the user's alone; its link carries the key in the fragment, and the
    key answers for the demo project only."""
    path = tmp_path / "board.json"
    await write_board_access(orch, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    link = board_link(path, "wf-0123456789abcdef")
    assert link.startswith(f"{orch.http_url}/#/w/wf-0123456789abcdef&key=mo_")
    async with _http(orch, link.split("&key=")[1]) as http:
        who = (await http.get("/board/api/whoami")).json()
    assert (who["role"], who["projects"]) == ("decide", [DEMO_PROJECT_ID])


async def test_a_tampered_record_is_an_error_on_the_page_and_does_not_end_the_stream(
    orch: Orchestrator,
) -> None:
    """A record whose signature fails shows integrity_error (in the list and on its page); the stream
    skips it and goes on with the next production's change."""
    keys = await _keys(orch)
    service = orch.service
    bad = (
        await service.start_workflow(Caller(), project_id="proj-a", workflow="diagnostic_linear")
    ).workflow_id
    await service.wait_status(Caller(), bad, 30, until=["completed"])
    redis: Any = orch.redis
    async with _http(orch, keys["read"]) as http, http.stream("GET", "/board/api/stream") as stream:
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry:")
        await redis.hset(orch.store.key(bad), "message", "forged")
        await redis.publish(orch.store.channel(bad), "updated||")
        page = (await http.get(f"/board/api/w/{bad}")).text
        assert 'data-error="integrity_error"' in page
        assert 'data-error="integrity_error"' in (await http.get("/board/api/productions")).text
        good = (await service.start_workflow(Caller(), project_id="proj-a", workflow="preview")).workflow_id
        with anyio.fail_after(20):
            async for line in lines:
                if line.startswith("data:") and json.loads(line[5:])["workflow_id"] == good:
                    break
