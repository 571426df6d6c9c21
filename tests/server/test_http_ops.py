"""The HTTP port's operational endpoints: health, readiness, metrics, webhooks; retention; graceful stop."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from mcp import Client

from server import JobRef, Orchestrator, Sandbox, Settings
from tests.server.conftest import OpenOrchestrator, structured, wait_status


async def test_health_readiness_and_metrics(orch: Orchestrator) -> None:
    """/healthz answers, /readyz reports Redis and breakers, /metrics exposes the engine's figures."""
    async with Client(orch.mcp) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
        assert (await wait_status(c, wid, {"completed", "failed"}, limit=30))["status"] == "completed"
    async with httpx.AsyncClient(base_url=orch.http_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "alive"}
        ready = (await http.get("/readyz")).json()
        assert ready["ready"] is True
        assert ready["redis"] == "ok"
        assert set(ready["breakers"]) >= {"task-service", "brain", "auto-movie"}
        metrics = (await http.get("/metrics")).text
    for name in ("mo_workflow_transitions_total", "mo_step_duration_seconds", "mo_agent_executions_total",
                 "mo_queue_depth", "mo_lease_reclaims_total", "mo_breaker_open", "mo_webhook_lag_seconds",
                 "mo_runs_active"):  # fmt: skip
        assert name in metrics
    assert 'mo_workflow_transitions_total{status="completed"} 1.0' in metrics
    assert 'mo_webhooks_total{outcome="accepted"}' in metrics


async def test_webhooks_need_their_job_token_and_duplicates_are_ignored(orch: Orchestrator) -> None:
    """A webhook without the per-job token is refused; a repeated one is accepted once."""
    body = {"task_id": "t-1", "project_id": "p", "status": "completed", "result": {"media_url": "http://m/x.png"},
            "completed_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    await orch.store.remember_job("wf-1", "wf-1:step", "t-1", "n1")
    token = JobRef("wf-1", "step").token(orch.webhook_secret, "n1")
    ok = {"wid": "wf-1", "step": "step", "n": "n1", "token": token}
    async with httpx.AsyncClient(base_url=orch.http_url) as http:
        refused = await http.post("/webhooks/tasks", params={**ok, "token": "x"}, json=body)
        assert refused.status_code == 401
        other = await http.post("/webhooks/tasks", params={**ok, "wid": "wf-2"}, json=body)
        assert other.status_code == 401
        first = await http.post("/webhooks/tasks", params=ok, json=body)
        again = await http.post("/webhooks/tasks", params=ok, json=body)
        bad = await http.post("/webhooks/tasks", params=ok, content=b"{")
    assert first.json() == {"ok": True, "duplicate": False, "late": False}
    assert again.json() == {"ok": True, "duplicate": True, "late": False}
    assert bad.status_code == 400
    assert await orch.store.job_result("wf-1", "wf-1:step", "t-1") == {
        "status": "completed",
        "result_url": "http://m/x.png",
        "error": "",
        "submission": "n1",
    }


async def test_a_webhook_for_a_job_its_step_already_settled_is_accepted_not_refused(
    orch: Orchestrator,
) -> None:
    """The real service flips a job's status ~6 s before its webhook: a step that settled from the task list
    (and forgot the job) still takes the webhook: 200, counted as late, its reason in the events, no audit."""
    body = {"task_id": "t-9", "project_id": "p", "status": "failed", "error": "'Context' object has no attribute "
            "'started_at'", "failed_at": "2026-01-01T00:00:00Z", "traceback": "Traceback ..."}  # fmt: skip
    rec, _ = await orch.store.create(project_id="p", workflow="preview", brief="", options={}, created_by="t",
                                     correlation_id="", enqueue=False)  # fmt: skip
    wid, step = rec.id, "scene.0:video_generator"
    await orch.store.remember_job(wid, f"{wid}:{step}", "t-9", "n9")
    await orch.store.forget_job(wid, f"{wid}:{step}")
    params = {
        "wid": wid,
        "step": step,
        "n": "n9",
        "token": JobRef(wid, step).token(orch.webhook_secret, "n9"),
    }
    async with httpx.AsyncClient(base_url=orch.http_url) as http:
        late = await http.post("/webhooks/tasks", params=params, json=body)
        again = await http.post("/webhooks/tasks", params=params, json=body)
        metrics = (await http.get("/metrics")).text
    assert (late.status_code, late.json()) == (200, {"ok": True, "duplicate": False, "late": True})
    assert again.status_code == 200
    (event,) = [e for e in await orch.store.events(wid) if e["what"] == "job.reported_late"]
    assert event["data"]["reason"] == "'Context' object has no attribute 'started_at'"
    assert 'mo_webhooks_total{outcome="late"} 1.0' in metrics
    assert not [e for e in await orch.audit.read(100) if e["what"] == "webhook.refused"]


async def test_finished_workflows_expire_after_the_retention(orch: Orchestrator) -> None:
    """A completed workflow's record, events, decisions, jobs and memo get the retention TTL."""
    async with Client(orch.mcp) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
        await wait_status(c, wid, {"completed", "failed"}, limit=30)
    retention = orch.settings.retention_days * 86400
    r: Any = orch.redis
    for suffix in ("", "events", "jobs"):
        ttl = await r.ttl(orch.store.key(wid, suffix))
        assert 0 < ttl <= retention, (suffix, ttl)


async def test_graceful_stop_hands_running_workflows_back(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings
) -> None:
    """Stopping an instance mid-run drains at a step boundary and re-queues the run; another instance finishes it."""
    async with open_orch(sandbox=standins) as first:
        standins.task_service.latency = 1.0
        async with Client(first.mcp) as c:
            wid = structured(await c.call_tool(
                "start_workflow", {"project_id": "p", "options": {"scenes": 1, "characters": 1, "auto_approve": True}}
            ))["workflow_id"]  # fmt: skip
            with anyio.fail_after(20):
                while structured(await c.call_tool("get_status", {"workflow_id": wid}))["percent"] < 10:
                    await anyio.sleep(0.05)
        assert first.engine is not None
        await first.engine.stop(grace_seconds=10)
        events = [e["what"] for e in await first.store.events(wid)]
        assert "workflow.failed" not in events
    second_settings = settings.model_copy(update={"instance_id": settings.instance_id + "-2"})
    async with open_orch(sandbox=standins, base=second_settings) as second, Client(second.mcp) as c:
        st = await wait_status(c, wid, {"completed", "failed"}, limit=30)
    assert st["status"] == "completed", st["last_error"]
