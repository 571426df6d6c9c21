"""A step's Task Service job against the stand-in with the real build's defects: the task list shows the end
before the webhook, reasons come only by webhook, rows get stuck, answers get lost, and there is no idempotency."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from adapters import (
    RecoverableError,
    RetryPolicy,
    ServiceGuard,
    SharedBreakers,
    TaskServiceClient,
    TransientError,
)
from server import Orchestrator, Sandbox
from server.engine import TaskServiceJobs
from tests.server.conftest import structured, wait_status

IMAGE = {"prompt": "a lighthouse", "image_params": {"width": 64, "height": 36}}
Jobs = Callable[..., Awaitable[TaskServiceJobs]]


@pytest.fixture
async def jobs(standins: Sandbox, orch: Orchestrator) -> AsyncIterator[Jobs]:
    """A factory of one workflow's TaskServiceJobs on the stand-in, its webhooks served by `orch`."""
    client = TaskServiceClient(standins.urls["task_service"], standins.task_service.api_key)
    guard = ServiceGuard("task-service", SharedBreakers(None), retry=RetryPolicy(max_attempts=2, base=0.01))

    async def make(**kw: Any) -> TaskServiceJobs:
        rec, _ = await orch.store.create(project_id="p1", workflow="preview", brief="", options={}, created_by="t",
                                         correlation_id="", enqueue=False)  # fmt: skip
        options: dict[str, Any] = {"webhook_base": orch.http_url, "webhook_secret": orch.webhook_secret,
                                   "poll_max": 0.05, "webhook_grace": 2.0, "reconcile_settle": 0.05} | kw  # fmt: skip
        return TaskServiceJobs(orch.store, client, guard, workflow_id=rec.id, project_id="p1", **options)

    yield make
    await client.aclose()


async def test_the_list_shows_the_end_first_and_the_step_waits_for_the_webhooks_result(
    standins: Sandbox, jobs: Jobs
) -> None:
    """Polled every 50 ms, the job's row ends 0.5 s before its webhook: the step takes the webhook's media URL."""
    standins.task_service.webhook_delay = 0.5
    result = await (await jobs()).run_task("keyframe", "generate_image", IMAGE)
    assert result["status"] == "completed"
    assert str(result["result_url"]).endswith(".png")
    assert result["thumbnail_url"]


async def test_a_failure_carries_the_services_own_reason(standins: Sandbox, jobs: Jobs) -> None:
    """The video job fails; the step's error names the service, the job type, the step and its reason."""
    with pytest.raises(RecoverableError) as info:
        await (await jobs()).run_task(
            "scene.0", "generate_video", {"scene_data": {}, "video_params": {"duration": 6}}
        )
    err = info.value
    assert (err.service, err.operation, err.step) == ("task-service", "generate_video", "scene.0")
    assert err.reason == "'Context' object has no attribute 'started_at'"
    assert str(err).endswith("failed: 'Context' object has no attribute 'started_at'")


async def test_without_its_webhook_the_reason_says_why_it_is_unknown_and_a_late_one_is_taken(
    standins: Sandbox, orch: Orchestrator, jobs: Jobs
) -> None:
    """Its webhook comes after the grace: the step fails saying where the reason would have come from; the
    late webhook is then accepted (not refused, not audited) and its reason lands in the workflow's events."""
    standins.task_service.webhook_delay = 1.0
    port = await jobs(webhook_grace=0.2)
    wid = port.workflow_id
    with pytest.raises(
        RecoverableError, match=r"its reason comes only by webhook, which did not arrive within 0\.2 s"
    ):
        await port.run_task("scene.0", "generate_video", {"scene_data": {}, "video_params": {}})
    with anyio.fail_after(5):
        while not (late := [e for e in await orch.store.events(wid) if e["what"] == "job.reported_late"]):
            await anyio.sleep(0.05)
    assert late[0]["data"]["reason"] == "'Context' object has no attribute 'started_at'"
    assert not [e for e in await orch.audit.read() if e["what"] == "webhook.refused"]


async def test_a_completed_job_whose_result_never_comes_is_submitted_again_by_the_steps_retry(
    jobs: Jobs,
) -> None:
    """Its webhook went to an address nobody answers (an instance that stopped): the list says completed, the
    result is gone; the step fails transiently (its retry submits a new job) saying why."""
    with pytest.raises(
        TransientError, match=r"ended without a result: the Task Service lists job .* as completed"
    ):
        await (await jobs(webhook_base="http://127.0.0.1:9", webhook_grace=0.3)).run_task(
            "keyframe", "generate_image", IMAGE
        )


async def test_a_row_stuck_at_processing_is_settled_by_its_webhook_or_bounded(
    standins: Sandbox, jobs: Jobs
) -> None:
    """An instant evaluation's row stays 'processing' for good: its webhook still settles it; with no
    webhook the step fails after the job budget, saying so, instead of waiting forever."""
    empty = {"department_slug": "story", "department_number": 1, "gather_data": [], "previous_evaluations": [],
             "threshold": 70}  # fmt: skip
    result = await (await jobs()).run_task("story.evaluate.0", "evaluate_department", empty)
    assert (result["status"], result["rating"], result["evaluation_result"]) == ("completed", 0, "fail")
    with pytest.raises(RecoverableError, match=r"never reported an end.*'processing'"):
        await (await jobs(webhook_base="", job_max_seconds=0.5)).run_task(
            "story.evaluate.0", "evaluate_department", empty
        )


async def test_a_lost_submit_answer_is_reconciled_never_resubmitted_blindly(
    standins: Sandbox, orch: Orchestrator, jobs: Jobs
) -> None:
    """The job was made but its answer lost (500 after queuing): the step finds it (no second job). A 500
    that made nothing: the task list shows no new job, so the step submits once more."""
    ts = standins.task_service
    ts.lose_answers = 1
    port = await jobs()
    key = f"{port.workflow_id}:keyframe"
    # an earlier submission of the same step left its result: it is not this submission's job
    await orch.store.put_job_result(
        port.workflow_id, key, "t-earlier", {"status": "failed", "submission": "old"}
    )
    made = await port.run_task("keyframe", "generate_image", IMAGE)
    assert made["status"] == "completed"
    assert made["task_id"] != "t-earlier"
    assert ts.submits_by_key[key] == 1
    ts.refuse_submits = 1
    port = await jobs()
    again = await port.run_task("keyframe", "generate_image", IMAGE)
    assert again["status"] == "completed"
    assert ts.submits_by_key[f"{port.workflow_id}:keyframe"] == 1  # the refused submit made no job


async def test_a_production_failing_on_a_service_says_who_what_where_why_and_what_next(
    standins: Sandbox, orch: Orchestrator
) -> None:
    """last_error and the events of a failed step name the service, job type, step, reason and what happens next."""
    standins.task_service.failure_rate = 1.0
    standins.task_service.refuse_submits = 0
    async with Client(orch.mcp) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p1", "workflow": "preview"}))[
            "workflow_id"
        ]
        failed = await wait_status(c, wid, {"failed", "completed"})
    assert failed["status"] == "failed"
    error = failed["last_error"]
    for part in ("task-service", "generate_image", "'keyframe'", "next:", "retry_step"):
        assert part in error, error
    assert "CUDA error: out of memory" in error or "Internal server error" in error
    events = await orch.store.events(wid)
    (end,) = [e["data"] for e in events if e["what"] == "workflow.failed"]
    assert {"service", "operation", "step", "reason", "next"} <= set(end)
    assert end["service"] == "task-service"
