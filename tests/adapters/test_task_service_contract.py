"""The Task Service client against the real build's answers as respx fixtures (docs/contracts/task-service.md):
errors, lost submit answers, dropped keep-alive connections. The service itself: tests/contracts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from adapters import OutcomeUnknownError, PermanentError, TaskServiceClient, TransientError

BASE = "http://tasks.test"


@pytest.fixture
async def client() -> AsyncIterator[TaskServiceClient]:
    """A client on a respx-mocked transport."""
    c = TaskServiceClient(BASE, "k-123", http=httpx.AsyncClient())
    yield c
    await c.aclose()


def _err(status: int, msg: str) -> httpx.Response:
    return httpx.Response(status, json={"error": msg, "message": msg, "timestamp": "2026-01-01T00:00:00Z"})


@respx.mock
async def test_submit_sends_key_idempotency_key_and_callback(client: TaskServiceClient) -> None:
    """201 answer is returned; the request carries X-API-Key, metadata.idempotency_key and callback_url."""
    route = respx.post(f"{BASE}/api/v1/tasks/submit").mock(
        return_value=httpx.Response(
            201,
            json={"task_id": "t-1", "status": "processing", "project_id": "p1", "estimated_duration": 300,
                  "queue_position": 1, "created_at": "2026-01-01T00:00:00Z"},
        )
    )  # fmt: skip
    answer = await client.submit(
        "p1", "generate_image", {"prompt": "a cat", "image_params": {}},
        idempotency_key="wf-1:keyframe", callback_url="http://orch/webhooks/tasks?t=x",
        metadata={"workflow_id": "wf-1"}, correlation_id="cid-9",
    )  # fmt: skip
    assert answer["task_id"] == "t-1"
    request = route.calls.last.request
    assert request.headers["X-API-Key"] == "k-123"
    assert request.headers["X-Correlation-ID"] == "cid-9"
    body = json.loads(request.content)
    assert body["metadata"] == {"workflow_id": "wf-1", "idempotency_key": "wf-1:keyframe"}
    assert body["callback_url"] == "http://orch/webhooks/tasks?t=x"
    assert body["priority"] == 2  # the service's NORMAL (its default)


@respx.mock
@pytest.mark.parametrize(
    ("project_id", "task_type", "data", "match"),
    [
        ("has space", "generate_image", {"prompt": "", "image_params": {}}, "project_id"),
        ("x" * 101, "generate_image", {"prompt": "", "image_params": {}}, "project_id"),
        ("p1", "render_animation", {}, "not accepted"),
        ("p1", "test_prompt", {}, "not accepted"),
        ("p1", "generate_video", {"scene_data": {}}, "video_params"),
        ("p1", "process_audio", {"prompt": "", "audio_params": {"seconds": 2}}, "reads duration"),
        (
            "p1",
            "evaluate_department",
            {
                "department_slug": "story",
                "department_number": 1,
                "previous_evaluations": [],
                "threshold": 70,
                "gather_data": {"content": "x"},
            },
            "list of objects",
        ),
    ],
)
async def test_invalid_requests_are_refused_before_sending(
    client: TaskServiceClient, project_id: str, task_type: str, data: dict[str, object], match: str
) -> None:
    """Bad project ids, the enum's rejected types, missing task_data keys and shapes the service would misread
    (a dict gather_data fails the job; audio_params.seconds is ignored) never reach the service."""
    route = respx.post(f"{BASE}/api/v1/tasks/submit")
    with pytest.raises(PermanentError, match=match):
        await client.submit(project_id, task_type, data, idempotency_key="k")
    assert not route.called


@respx.mock
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (_err(401, "API key required in X-API-Key header"), PermanentError),
        (_err(401, "Invalid API key"), PermanentError),
        (httpx.Response(422, json={"detail": [{"loc": ["query", "limit"], "msg": "bad"}]}), PermanentError),
        (_err(400, "Invalid project ID format. Only alphanumeric, underscore, and dash characters allowed."),
         PermanentError),
        (_err(429, "Too many requests"), TransientError),
        (_err(500, "Internal server error"), TransientError),
        (_err(503, "Service unavailable"), TransientError),
    ],
)  # fmt: skip
async def test_error_answers_map_to_the_taxonomy(
    client: TaskServiceClient, response: httpx.Response, error: type[Exception]
) -> None:
    """4xx are permanent (never retried); 429 and 5xx are transient; the message keeps the service's words."""
    respx.get(f"{BASE}/api/v1/projects/p1/tasks").mock(return_value=response)
    with pytest.raises(error) as info:
        await client.project_tasks("p1")
    assert str(response.status_code) in str(info.value)


@respx.mock
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_err(500, "Internal server error"), OutcomeUnknownError),
        (httpx.ReadTimeout("slow"), OutcomeUnknownError),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), OutcomeUnknownError),
        (_err(504, "Gateway timeout"), OutcomeUnknownError),
        (httpx.ConnectError("refused"), TransientError),
        (_err(503, "Service unavailable"), TransientError),
        (_err(400, "Unsupported task type: TaskType.RENDER_ANIMATION"), PermanentError),
    ],
)  # fmt: skip
async def test_a_submit_whose_answer_is_lost_is_outcome_unknown(
    client: TaskServiceClient, answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    """The service enqueues a job before it answers: after a 500, a 504, a timeout or a drop the job may exist
    (OutcomeUnknownError, never retried blindly); a refused connection or a 503 made none (plain transient)."""
    route = respx.post(f"{BASE}/api/v1/tasks/submit")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    with pytest.raises(error) as info:
        await client.submit("p1", "process_audio", {"prompt": "x", "audio_params": {}}, idempotency_key="k")
    assert (type(info.value) is OutcomeUnknownError) == (error is OutcomeUnknownError)
    assert route.call_count == 1


@respx.mock
async def test_a_get_on_a_connection_dropped_by_the_keep_alive_is_sent_once_more(
    client: TaskServiceClient,
) -> None:
    """The service closes idle connections after 5 s: a GET that meets one is resent once; a second drop fails."""
    page = httpx.Response(
        200, json={"tasks": [], "pagination": {"page": 1, "limit": 100, "total": 0, "total_pages": 0}}
    )
    drop = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    route = respx.get(f"{BASE}/api/v1/projects/p1/tasks").mock(side_effect=[drop, page])
    assert await client.project_tasks("p1") == []
    assert (route.call_count, client.resent_after_drop) == (2, 1)
    route.mock(side_effect=[drop, drop])
    with pytest.raises(TransientError, match="RemoteProtocolError"):
        await client.project_tasks("p1")


@respx.mock
async def test_project_tasks_reads_every_page(client: TaskServiceClient) -> None:
    """The project's task list is followed across pages; rows carry statuses only."""
    row = {"task_type": "generate_image", "status": "completed", "created_at": "c", "completed_at": "d",
           "result_url": "http://m/x.png"}  # fmt: skip

    def page(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params["page"])
        return httpx.Response(
            200, json={"tasks": [{**row, "task_id": f"t{n}"}],
                       "pagination": {"page": n, "limit": 1, "total": 2, "total_pages": 2}}
        )  # fmt: skip

    respx.get(f"{BASE}/api/v1/projects/p1/tasks").mock(side_effect=page)
    rows = await client.project_tasks("p1", limit=1)
    assert [r["task_id"] for r in rows] == ["t1", "t2"]
    assert await client.find("p1", "t2") == {**row, "task_id": "t2"}
    assert await client.find("p1", "t9") is None


@respx.mock
async def test_status_route_404_means_unknown_not_failed(client: TaskServiceClient) -> None:
    """The current build always answers 404 on the status route: that is "unknown", not a failure."""
    respx.get(f"{BASE}/api/v1/tasks/t-1/status").mock(
        return_value=_err(404, "Task not found or status unavailable")
    )
    assert await client.task_status("t-1") is None


@respx.mock
async def test_cancel_running_and_finished(client: TaskServiceClient) -> None:
    """DELETE answers 200 for a running task (which completes anyway) and 500 for a completed or failed one:
    read as "already finished"."""
    respx.delete(f"{BASE}/api/v1/tasks/t-run").mock(
        return_value=httpx.Response(200, json={"task_id": "t-run", "status": "cancelled",
                                               "message": "Task was queued and has been revoked",
                                               "previous_state": "queued", "cancelled_at": "x"})
    )  # fmt: skip
    respx.delete(f"{BASE}/api/v1/tasks/t-done").mock(return_value=_err(500, "Failed to cancel task: "))
    assert (await client.cancel("t-run"))["status"] == "cancelled"
    assert (await client.cancel("t-done"))["status"] == "finished"


@respx.mock
async def test_health(client: TaskServiceClient) -> None:
    """Health is read without the key and reports reachability."""
    respx.get(f"{BASE}/health").mock(return_value=httpx.Response(200, json={"status": "healthy"}))
    assert await client.healthy()
    respx.get(f"{BASE}/health").mock(side_effect=httpx.ConnectError("down"))
    assert not await client.healthy()
