"""The Task Service's contract (docs/contracts/task-service.md), against the stand-in or the real service.

Each test states one thing the real build (jomapps/celery-redis @ 56b07f3) does and that our adapters rely
on or survive; run against the real one with ``TASK_SERVICE_CONTRACT_URL``/``TASK_SERVICE_CONTRACT_KEY``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import socket
import time
import uuid
from typing import Any

import httpx

from adapters import TaskServiceClient
from server.engine import outcome_of_webhook
from tests.contracts.conftest import Target, WebhookSink

ROW_KEYS = {"task_id", "task_type", "status", "created_at", "completed_at", "result_url"}
VIDEO_DEFECT = "'Context' object has no attribute 'started_at'"


def _http(target: Target, key: str | None = None) -> httpx.AsyncClient:
    headers = {"X-API-Key": target.key if key is None else key} if (key is None or key) else {}
    return httpx.AsyncClient(base_url=f"{target.url}/api/v1", headers=headers, timeout=60)


async def _submit(
    http: httpx.AsyncClient, project: str, task_type: str, data: dict[str, Any], **extra: Any
) -> str:
    r = await http.post(
        "/tasks/submit", json={"project_id": project, "task_type": task_type, "task_data": data, **extra}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["task_id"])


async def _rows(http: httpx.AsyncClient, project: str) -> dict[str, dict[str, Any]]:
    r = await http.get(f"/projects/{project}/tasks", params={"limit": 100})
    assert r.status_code == 200, r.text
    return {row["task_id"]: row for row in r.json()["tasks"]}


async def test_auth_is_401_for_a_missing_and_for_a_wrong_key(task_service: Target) -> None:
    """No key and a wrong key are both 401 with the error envelope (never 403); health needs no key."""
    async with _http(task_service, key="") as none, _http(task_service, key="wrong") as wrong:
        missing = await none.get("/projects/p1/tasks")
        bad = await wrong.get("/projects/p1/tasks")
        health = await none.get(f"{task_service.url}/health")
    assert (missing.status_code, missing.json()["error"]) == (401, "API key required in X-API-Key header")
    assert (bad.status_code, bad.json()["error"]) == (401, "Invalid API key")
    assert set(bad.json()) == {"error", "message", "timestamp"}
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"


async def test_submit_answers_its_shape_and_refuses_what_it_cannot_take(
    task_service: Target, project: str
) -> None:
    """201 with constants and a naive UTC created_at; 422 in pydantic's shape, 400 for the enum's dead types."""
    async with _http(task_service) as http:
        ok = await http.post("/tasks/submit", json={"project_id": project, "task_type": "evaluate_department",
                                                    "task_data": {"department_slug": "story", "gather_data": []}})  # fmt: skip
        cases = {
            "project_id": {"project_id": "bad id!", "task_type": "generate_image", "task_data": {}},
            "priority": {"project_id": project, "task_type": "generate_image", "task_data": {}, "priority": 4},
            "callback_url": {"project_id": project, "task_type": "generate_image", "task_data": {},
                             "callback_url": "ftp://x"},
            "task_data": {"project_id": project, "task_type": "generate_image", "task_data": []},
        }  # fmt: skip
        refused = {name: await http.post("/tasks/submit", json=body) for name, body in cases.items()}
        dead = await http.post("/tasks/submit", json={"project_id": project, "task_type": "render_animation",
                                                      "task_data": {}})  # fmt: skip
        limit = await http.get(f"/projects/{project}/tasks", params={"limit": 101})
        bad_project = await http.get("/projects/bad.id/tasks")
        bad_id = await http.get("/tasks/xyz/status")
    assert ok.status_code == 201, ok.text
    answer = ok.json()
    assert set(answer) == {
        "task_id",
        "status",
        "project_id",
        "estimated_duration",
        "queue_position",
        "created_at",
    }
    assert (answer["status"], answer["estimated_duration"], answer["queue_position"]) == (
        "processing",
        300,
        1,
    )
    assert dt.datetime.fromisoformat(answer["created_at"]).tzinfo is None  # naive UTC, no "Z"
    uuid.UUID(answer["task_id"])
    for name, r in refused.items():
        assert r.status_code == 422, (name, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", name], r.text
    assert refused["priority"].json()["detail"][0]["msg"] == "Input should be 1, 2 or 3"
    assert (
        refused["callback_url"].json()["detail"][0]["msg"]
        == "Value error, Callback URL must be HTTP or HTTPS"
    )
    assert (dead.status_code, dead.json()["error"]) == (
        400,
        "Unsupported task type: TaskType.RENDER_ANIMATION",
    )
    assert limit.status_code == 422
    assert bad_project.status_code == 400
    assert (bad_id.status_code, bad_id.json()["error"]) == (
        400,
        "Invalid task ID format. Must be a valid UUID.",
    )


async def test_there_is_no_idempotency(task_service: Target, project: str) -> None:
    """The same submit twice, same metadata and X-Correlation-ID: two jobs (so we never resend blindly)."""
    body = {"department_slug": "story", "gather_data": []}
    async with _http(task_service) as http:
        headers = {"X-Correlation-ID": "corr-1"}
        meta = {"metadata": {"idempotency_key": "wf-1:step"}}
        first = await http.post(
            "/tasks/submit",
            headers=headers,
            json={"project_id": project, "task_type": "evaluate_department", "task_data": body, **meta},
        )
        second = await http.post(
            "/tasks/submit",
            headers=headers,
            json={"project_id": project, "task_type": "evaluate_department", "task_data": body, **meta},
        )
        rows = await _rows(http, project)
    assert first.json()["task_id"] != second.json()["task_id"]
    assert set(rows) == {first.json()["task_id"], second.json()["task_id"]}


async def _watch_rows(http: httpx.AsyncClient, project: str, names: dict[str, str], sink: WebhookSink,
                      within: float) -> dict[str, float]:  # fmt: skip
    """When each job's row first showed an end (monotonic), polling every 0.1 s until every webhook came;
    `names` maps a task id to its callback's name."""
    ended: dict[str, float] = {}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for tid, row in (await _rows(http, project)).items():
            assert set(row) == ROW_KEYS, row  # no result, no error: the list only tells that a job ended
            assert (row["completed_at"], row["result_url"]) == (None, None)
            if tid in names and names[tid] not in ended and row["status"] in {"completed", "failed"}:
                ended[names[tid]] = time.monotonic()
        if all(sink.tries.get(name) for name in names.values()):
            return ended
        await asyncio.sleep(0.1)
    msg = f"not every webhook came within {within} s: ended {ended}, webhooks {list(sink.tries)}"
    raise TimeoutError(msg)


async def test_every_type_ends_in_the_list_first_and_only_its_webhook_says_what_and_why(
    task_service: Target, project: str, sink: WebhookSink
) -> None:
    """Status flips before the webhook; rows carry no result; webhooks carry each type's real fields and the
    failure's own reason; our adapter reads the media URL, the rating and the reason from them."""
    jobs: dict[str, tuple[str, dict[str, Any]]] = {
        "image": ("generate_image", {"prompt": "a lighthouse at dusk", "image_params": {"width": 768, "height": 432}}),
        "audio": ("process_audio", {"prompt": "wind and waves", "audio_params": {"duration": 2}}),
        "video": ("generate_video", {"scene_data": {"scene_id": "s1"}, "video_params": {"duration": 6, "fps": 24}}),
        "eval": ("evaluate_department", {"department_slug": "story", "department_number": 1, "threshold": 70,
                                         "gather_data": [{"content": "a story", "summary": "s", "context": "c"}]}),
        "eval_dict": ("evaluate_department", {"department_slug": "story", "gather_data": {"content": "x"}}),
    }  # fmt: skip
    async with _http(task_service) as http:
        names = {}
        for name, (task_type, data) in jobs.items():
            tid = await _submit(http, project, task_type, data, callback_url=sink.callback(name),
                                metadata={"workflow_id": "wf-c", "step": name})  # fmt: skip
            names[tid] = name
        ended = await _watch_rows(http, project, names, sink, 240)
    hooks = {name: sink.tries[name][0] for name in names.values()}
    for name in names.values():
        assert name in ended, f"{name}: the list never showed its end"
        assert ended[name] < hooks[name].at, f"{name}: the webhook came before the list showed the end"
        assert hooks[name].headers["user-agent"] == "AI-Movie-Task-Service/1.0"
        assert "authorization" not in hooks[name].headers
        assert hooks[name].body["metadata"] == {"workflow_id": "wf-c", "step": name}
    image, audio, video = (hooks[n].body for n in ("image", "audio", "video"))
    assert image["status"] == "completed"
    assert {"image_url", "thumbnail_url", "width", "height", "format"} <= set(image["result"])
    assert not {"media_url", "url", "result_url", "score"} & set(image["result"])
    assert {"audio_url", "preview_url"} <= set(audio["result"])
    assert audio["result"]["duration"] == 2  # `duration` is read; `seconds` would be ignored (30 s)
    assert (video["status"], video["error"]) == ("failed", VIDEO_DEFECT)
    assert "traceback" in video
    evaluation = hooks["eval"].body["result"]
    assert isinstance(evaluation["rating"], int)
    assert 0 <= evaluation["rating"] <= 100
    assert evaluation["evaluation_result"] in {"pass", "fail"}
    assert {"evaluation_summary", "issues", "suggestions"} <= set(evaluation)
    assert hooks["eval_dict"].body["error"] == "'str' object has no attribute 'get'"
    # what our adapter makes of them
    assert outcome_of_webhook(image)["result_url"] == image["result"]["image_url"]
    assert outcome_of_webhook(audio)["result_url"] == audio["result"]["audio_url"]
    assert outcome_of_webhook(hooks["eval"].body)["rating"] == evaluation["rating"]
    assert outcome_of_webhook(video)["error"] == VIDEO_DEFECT


async def test_webhook_is_tried_three_times_on_any_non_2xx_then_dropped(
    task_service: Target, project: str, sink: WebhookSink
) -> None:
    """A refusing receiver gets 3 identical tries at 0, +1, +2 s; an instant job's row may stay processing."""
    async with _http(task_service) as http:
        tid = await _submit(http, project, "evaluate_department", {"department_slug": "audio", "gather_data": []},
                            callback_url=sink.callback("refused", 500))  # fmt: skip
        tries = await sink.wait("refused", 3, within=60)
        await asyncio.sleep(3.5)  # a fourth would have come by now
        row = (await _rows(http, project))[tid]
    assert len(sink.tries["refused"]) == 3
    gaps = [round(b.at - a.at, 1) for a, b in itertools.pairwise(tries)]
    assert 0.8 <= gaps[0] <= 1.6, gaps
    assert 1.8 <= gaps[1] <= 2.6, gaps
    assert tries[0].body == tries[1].body == tries[2].body
    assert tries[0].body["result"]["rating"] == 0  # no content at all rates 0, at once
    # The job finishes before the submit route saves its record: the row usually stays "processing".
    assert row["status"] in {"processing", "completed"}


async def test_cancel_finished_is_500_unknown_is_200_and_the_status_route_is_404(
    task_service: Target, project: str, sink: WebhookSink
) -> None:
    """Cancel: 500 with an empty detail on a finished task, 200 on an unknown id; the status route: 404."""
    async with _http(task_service) as http:
        tid = await _submit(http, project, "evaluate_department",
                            {"department_slug": "story", "gather_data": [{"content": "x"}]},
                            callback_url=sink.callback("done"))  # fmt: skip
        await sink.wait("done", within=120)
        finished = await http.delete(f"/tasks/{tid}")
        unknown = await http.delete(f"/tasks/{uuid.uuid4()}")
        status = await http.get(f"/tasks/{tid}/status")
    assert (finished.status_code, finished.json()["error"]) == (500, "Failed to cancel task: ")
    assert unknown.status_code == 200
    assert (unknown.json()["status"], unknown.json()["message"]) == (
        "cancelled",
        "Task was queued and has been revoked",
    )
    assert (status.status_code, status.json()["error"]) == (404, "Task not found or status unavailable")
    client = TaskServiceClient(task_service.url, task_service.key)
    try:
        assert (await client.cancel(tid))["status"] == "finished"
        assert await client.task_status(tid) is None
    finally:
        await client.aclose()


async def test_an_idle_connection_is_closed_after_5_seconds(task_service: Target) -> None:
    """Keep-alive: a connection idle for 4 s is still served; one idle for 5.5 s has been closed."""
    host, port = task_service.url.removeprefix("http://").split(":")
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def read_response(s: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += s.recv(65536)
        return head

    def exchange(idle: float) -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(request)
            assert read_response(s).startswith(b"HTTP/1.1 200")
            time.sleep(idle)
            try:
                s.sendall(request)
                return read_response(s)
            except (ConnectionResetError, BrokenPipeError):
                return b""

    kept, dropped = await asyncio.gather(asyncio.to_thread(exchange, 4.0), asyncio.to_thread(exchange, 5.5))
    assert kept.startswith(b"HTTP/1.1 200")
    assert dropped == b""


async def test_our_client_submits_lists_and_reads_the_result(
    task_service: Target, project: str, sink: WebhookSink
) -> None:
    """Our client against it: a submit, the project's tasks since then, a webhook refused with 404 tried again."""
    client = TaskServiceClient(task_service.url, task_service.key)
    try:
        answer = await client.submit(project, "generate_image", {"prompt": "fox", "image_params": {"width": 64, "height": 36}},
                                     idempotency_key="wf:step", callback_url=sink.callback("img", 404))  # fmt: skip
        tries = await sink.wait("img", 3, within=120)
        rows = await client.tasks_since(project, "generate_image", time.time() - 600)
    finally:
        await client.aclose()
    assert [r["task_id"] for r in rows] == [answer["task_id"]]
    assert str(outcome_of_webhook(tries[-1].body)["result_url"]).startswith(("http://", "https://"))
