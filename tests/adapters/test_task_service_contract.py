"""Contract tests of the Task Service client (respx): every documented answer, errors and defects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from adapters import PermanentError, TaskServiceClient, TransientError

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
    assert body["priority"] == 1


@respx.mock
@pytest.mark.parametrize(
    ("project_id", "task_type", "data", "match"),
    [
        ("has space", "generate_image", {"prompt": "", "image_params": {}}, "project_id"),
        ("x" * 101, "generate_image", {"prompt": "", "image_params": {}}, "project_id"),
        ("p1", "render_animation", {}, "not accepted"),
        ("p1", "test_prompt", {}, "not accepted"),
        ("p1", "generate_video", {"scene_data": {}}, "video_params"),
    ],
)
async def test_invalid_requests_are_refused_before_sending(
    client: TaskServiceClient, project_id: str, task_type: str, data: dict[str, object], match: str
) -> None:
    """Bad project ids, the enum's rejected types and missing task_data keys never reach the service."""
    route = respx.post(f"{BASE}/api/v1/tasks/submit")
    with pytest.raises(PermanentError, match=match):
        await client.submit(project_id, task_type, data, idempotency_key="k")
    assert not route.called


@respx.mock
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (_err(401, "Missing API key"), PermanentError),
        (_err(403, "Invalid API key"), PermanentError),
        (httpx.Response(422, json={"detail": [{"loc": ["body", "priority"], "msg": "bad"}]}), PermanentError),
        (_err(400, "Task type render_animation is not supported"), PermanentError),
        (_err(429, "Too many requests"), TransientError),
        (_err(500, "Internal server error"), TransientError),
        (_err(503, "Service unavailable"), TransientError),
    ],
)
async def test_error_answers_map_to_the_taxonomy(
    client: TaskServiceClient, response: httpx.Response, error: type[Exception]
) -> None:
    """4xx are permanent (never retried); 429 and 5xx are transient; the message keeps the service's words."""
    respx.post(f"{BASE}/api/v1/tasks/submit").mock(return_value=response)
    with pytest.raises(error) as info:
        await client.submit("p1", "process_audio", {"prompt": "x", "audio_params": {}}, idempotency_key="k")
    assert str(response.status_code) in str(info.value)


@respx.mock
@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_network_failures_are_transient(client: TaskServiceClient, exc: Exception) -> None:
    """Connection errors and timeouts are transient."""
    respx.post(f"{BASE}/api/v1/tasks/submit").mock(side_effect=exc)
    with pytest.raises(TransientError, match="unreachable"):
        await client.submit("p1", "process_audio", {"prompt": "x", "audio_params": {}}, idempotency_key="k")


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
async def test_cancel_running_and_completed(client: TaskServiceClient) -> None:
    """DELETE cancels a running task; the 500 it answers for a completed task means "already finished"."""
    respx.delete(f"{BASE}/api/v1/tasks/t-run").mock(
        return_value=httpx.Response(200, json={"task_id": "t-run", "status": "cancelled", "message": "ok",
                                               "previous_state": "processing", "cancelled_at": "x"})
    )  # fmt: skip
    respx.delete(f"{BASE}/api/v1/tasks/t-done").mock(return_value=_err(500, "Internal server error"))
    assert (await client.cancel("t-run"))["status"] == "cancelled"
    assert (await client.cancel("t-done"))["status"] == "finished"


@respx.mock
async def test_health(client: TaskServiceClient) -> None:
    """Health is read without the key and reports reachability."""
    respx.get(f"{BASE}/health").mock(return_value=httpx.Response(200, json={"status": "healthy"}))
    assert await client.healthy()
    respx.get(f"{BASE}/health").mock(side_effect=httpx.ConnectError("down"))
    assert not await client.healthy()


@respx.mock
async def test_fetch_json_reads_a_result_document_through_the_clients_connections(
    client: TaskServiceClient,
) -> None:
    """An evaluation's result_url is read with the client's own connection pool and TLS settings."""
    url = f"{BASE}/media/p1/eval.json"
    route = respx.get(url).mock(return_value=httpx.Response(200, json={"score": 81}))
    assert await client.fetch_json(url) == {"score": 81}
    assert route.calls.last.request.url == url
    respx.get(f"{BASE}/media/busy.json").mock(return_value=_err(503, "busy"))
    with pytest.raises(TransientError):
        await client.fetch_json(f"{BASE}/media/busy.json")
    respx.get(f"{BASE}/media/list.json").mock(return_value=httpx.Response(200, json=[1, 2]))
    with pytest.raises(PermanentError, match="not a JSON object"):
        await client.fetch_json(f"{BASE}/media/list.json")
    respx.get(f"{BASE}/media/text").mock(return_value=httpx.Response(200, text="<html>"))
    with pytest.raises(PermanentError, match="not JSON"):
        await client.fetch_json(f"{BASE}/media/text")
