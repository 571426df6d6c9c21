"""The stand-ins speak the contracts: driven by the real adapters over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters import AutoMovieClient, OutcomeUnknownError, PermanentError, TaskServiceClient, TransientError
from server.sandbox import AutoMovieStandIn, Sandbox, TaskServiceStandIn, serve_app


async def test_task_service_stand_in_serves_real_files_queues_and_loses_answers(tmp_path: Path) -> None:
    """What only the stand-in has beyond the contract suite (tests/contracts): its media are real files it
    serves; with its worker slots full a cancelled job never runs (its row stays processing, no webhook); a
    lost answer (chaos) still made the job; the switches turn the defects off."""
    received: list[dict[str, Any]] = []

    async def webhook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    receiver = Starlette(routes=[Route("/hook", webhook, methods=["POST"])])
    ts = TaskServiceStandIn(media_dir=tmp_path / "media", latency=0.05, webhook_delay=0.05, concurrency=1)
    async with serve_app(ts.app()) as url, serve_app(receiver) as hook_url:
        ts.public_url = url
        client = TaskServiceClient(url, ts.api_key)
        try:
            img = await client.submit("p1", "generate_image", {"prompt": "fox", "image_params": {}},
                                      idempotency_key="a", callback_url=f"{hook_url}/hook")  # fmt: skip
            queued = await client.submit("p1", "process_audio", {"prompt": "rain", "audio_params": {}},
                                         idempotency_key="b", callback_url=f"{hook_url}/hook")  # fmt: skip
            assert (await client.cancel(queued["task_id"]))[
                "message"
            ] == "Task was queued and has been revoked"
            with anyio.fail_after(10):
                while len(received) < 1:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert [r["task_id"] for r in received] == [img["task_id"]]  # the cancelled one never ran
            rows = {r["task_id"]: r["status"] for r in await client.project_tasks("p1")}
            assert rows == {img["task_id"]: "completed", queued["task_id"]: "processing"}
            image_url = received[0]["result"]["image_url"]
            async with httpx.AsyncClient() as http:
                png = (await http.get(image_url)).content
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            ts.lose_answers = 1
            with pytest.raises(OutcomeUnknownError):
                await client.submit(
                    "p1", "generate_image", {"prompt": "x", "image_params": {}}, idempotency_key="c"
                )
            assert ts.submits_by_key["c"] == 1  # the job exists although its answer was lost
            ts.outage = True
            with pytest.raises(TransientError, match="503"):
                await client.project_tasks("p1")
        finally:
            await client.aclose()
    await ts.aclose()
    calm = TaskServiceStandIn.without_defects(tmp_path / "m2")
    assert (calm.webhook_delay, calm.video_always_fails, calm.stuck_rows) == (0.0, False, False)


async def test_stand_ins_without_defects_send_the_webhook_with_the_status_whatever_the_delay_setting(
    tmp_path: Path,
) -> None:
    """`--no-defects` / SANDBOX_DEFECTS=false: the late webhook is a defect, so the delay setting does not apply
    (it did: the setting's 6 s reached the stand-in and the benchmarks measured that wait)."""
    async with Sandbox.running(tmp_path / "off", webhook_delay=6.0, defects=False) as off:
        assert (off.task_service.webhook_delay, off.task_service.video_always_fails) == (0.0, False)
    async with Sandbox.running(tmp_path / "on", webhook_delay=2.5) as on:
        assert (on.task_service.webhook_delay, on.task_service.video_always_fails) == (2.5, True)


async def test_auto_movie_stand_in_persists_and_expires_tokens(tmp_path: Path) -> None:
    """Project reads, status PUT and Payload progress persist to the JSON file; expired tokens re-login."""
    am = AutoMovieStandIn(store_file=tmp_path / "projects.json", token_ttl=0.2)
    am.seed("p1", "Lighthouse", genre="sci-fi")
    async with serve_app(am.app()) as url:
        client = AutoMovieClient(
            url, api_token=am.api_token, payload_email=am.email, payload_password=am.password
        )
        try:
            project = await client.get_project("p1")
            assert project["genre"] == "scifi"
            await client.update_status("p1", "production")
            await client.write_progress("p1", "story_development", ["concept"], 10)
            await asyncio.sleep(0.3)
            await client.write_progress("p1", "visual_design", ["concept", "story"], 40)
            assert client.logins == 2
            with pytest.raises(PermanentError, match="treated as not found"):
                await client.get_project("missing")  # the app answers 500 for an unknown project
        finally:
            await client.aclose()
    am.flush()
    reloaded = AutoMovieStandIn(store_file=tmp_path / "projects.json")._load()["p1"]
    assert reloaded["status"] == "production"
    assert reloaded["progress"]["currentPhase"] == "visual_design"
    assert reloaded["progress"]["overallProgress"] == 40


async def test_breaker_opens_on_all_instances_when_the_stand_in_fails_then_closes(
    tmp_path: Path, redis_client: Any, key_prefix: str
) -> None:
    """The Task Service stand-in fails N times: the breaker opens on both instances, a half-open probe closes it."""
    from adapters import CircuitOpenError, RetryPolicy, ServiceGuard, SharedBreakers

    ts = TaskServiceStandIn(media_dir=tmp_path / "m", outage=True)
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with serve_app(ts.app()) as url:
        client = TaskServiceClient(url, ts.api_key, http=httpx.AsyncClient(event_hooks={"request": [count]}))
        boards = [SharedBreakers(redis_client, prefix=key_prefix, instance=name) for name in ("a", "b")]
        guards = [ServiceGuard("task-service", b, fail_max=3, reset_timeout=0.5, max_open_wait=0,
                               retry=RetryPolicy(max_attempts=1)) for b in boards]  # fmt: skip
        for b in boards:
            await b.start()
        try:
            for _ in range(3):
                with pytest.raises(TransientError, match="503"):
                    await guards[0].call(lambda: client.project_tasks("p1"))
            with anyio.fail_after(5):
                while guards[1].state != "open":
                    await asyncio.sleep(0.01)
            before = len(sent)
            with pytest.raises(CircuitOpenError):
                await guards[1].call(lambda: client.project_tasks("p1"))
            assert len(sent) == before, "an open breaker must not reach the service"
            ts.outage = False
            await asyncio.sleep(0.6)
            assert await guards[1].call(lambda: client.project_tasks("p1")) == []  # the half-open probe
            assert guards[1].state == "closed"
            with anyio.fail_after(5):
                while guards[0].state != "closed":
                    await asyncio.sleep(0.01)
        finally:
            for b in boards:
                await b.stop()
            await client.aclose()
