"""The Tasks extension (io.modelcontextprotocol/tasks, 2026-07-28) in process, through the SDK's Client."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import jsonschema
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict

from adapters import Status
from server import Caller, Orchestrator
from server.core import WorkflowStatus
from server.mcp import TASKS_EXTENSION, TasksExtension, build_mcp_server
from tests.server.clients import connect, stdio_client
from tests.server.conftest import OpenOrchestrator, structured


class Wire(BaseModel):
    """Any result, every key kept as it came over the wire."""

    model_config = ConfigDict(extra="allow")


async def send(client: Client, request: types.Request[Any, Any]) -> dict[str, Any]:
    """A request the SDK has no method for; the result as a plain dict."""
    return (await client.session.send_request(request, Wire)).model_dump()


class TaskHandle(types.Result):
    """The CreateTaskResult of the extension, as a client reads it."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskIdParams(types.RequestParams):
    """Params of tasks/get and tasks/cancel."""

    task_id: str


class UpdateParams(types.RequestParams):
    """Params of tasks/update."""

    task_id: str
    input_responses: dict[str, Any]


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    """tasks/get."""

    method: Literal["tasks/get"] = "tasks/get"
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    """tasks/cancel."""

    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param: ClassVar[str | None] = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    """tasks/update."""

    method: Literal["tasks/update"] = "tasks/update"
    name_param: ClassVar[str | None] = "taskId"


async def _unresolved(handle: TaskHandle, ctx: ClaimContext) -> types.CallToolResult:
    del handle, ctx
    msg = "these tests drive tasks themselves (session.call_tool with allow_claimed=True)"
    raise AssertionError(msg)


class TasksClient(ClientExtension):
    """Declares the Tasks extension and claims the "task" result shape."""

    identifier = TASKS_EXTENSION

    def claims(self) -> list[ResultClaim[Any]]:
        """The CreateTaskResult claim on tools/call."""
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=_unresolved)]


async def get(client: Client, task_id: str) -> dict[str, Any]:
    """tasks/get as a plain dict."""
    return await send(client, GetTask(params=TaskIdParams(task_id=task_id)))


async def update(client: Client, task_id: str, responses: dict[str, Any]) -> dict[str, Any]:
    """tasks/update as a plain dict."""
    req = UpdateTask(params=UpdateParams(task_id=task_id, input_responses=responses))
    return await send(client, req)


async def start(client: Client, **args: Any) -> TaskHandle:
    """start_workflow by a client that declared the extension: the answer is a task."""
    result = await client.session.call_tool("start_workflow", args, allow_claimed=True)
    assert isinstance(result, TaskHandle), result
    return result


async def poll(client: Client, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """tasks/get until `done` holds (pollIntervalMs is honoured loosely: these tests run fast stand-ins)."""
    with anyio.fail_after(60):
        while True:
            task = await get(client, task_id)
            if done(task):
                return task
            await anyio.sleep(0.05)


def answer_first(task: dict[str, Any]) -> dict[str, Any]:
    """An inputResponses accepting the recommended (else first) option of every input request."""
    out = {}
    for key, req in task["inputRequests"].items():
        choice = req["params"]["requestedSchema"]["properties"]["choice"]
        out[key] = {"action": "accept", "content": {"choice": choice.get("default") or choice["enum"][0],
                                                    "comment": "from the task test"}}  # fmt: skip
    return out


async def test_a_production_runs_to_completed_through_tasks_get_and_update(orch: Orchestrator) -> None:
    """start_workflow answers with a task (id = workflow id); tasks/get and tasks/update drive it to completed."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        assert (client.server_capabilities.extensions or {}).get(TASKS_EXTENSION) == {}
        handle = await start(client, project_id="p1", brief="a lighthouse keeper",
                             options={"scenes": 1, "characters": 1})  # fmt: skip
        assert re.fullmatch(r"wf-[0-9a-f]{16}", handle.task_id)
        assert handle.status == "working"
        assert isinstance(handle.ttl_ms, int)
        assert handle.ttl_ms >= orch.store.retention_seconds * 1000
        assert handle.poll_interval_ms == 2000
        # durable before the reply: the record is there already
        assert (await orch.store.get(handle.task_id)) is not None
        seen: set[str] = set()
        answered = 0
        while True:
            task = await poll(client, handle.task_id, lambda t: t["status"] != "working")
            assert task["resultType"] == "complete"
            if task["status"] != "input_required":
                break
            keys = set(task["inputRequests"])
            assert not keys & seen, "an input request key was reused"
            seen |= keys
            form = next(iter(task["inputRequests"].values()))
            assert form["method"] == "elicitation/create"
            assert form["params"]["mode"] == "form"
            schema = form["params"]["requestedSchema"]
            assert schema["required"] == ["choice"]
            assert schema["properties"]["choice"]["enum"]
            assert "comment" in schema["properties"]
            assert "decision" in task["statusMessage"]
            assert (await update(client, handle.task_id, answer_first(task)))["resultType"] == "complete"
            answered += len(keys)
    assert task["status"] == "completed", task
    assert answered >= 2
    result = task["result"]
    assert result["isError"] is False
    sc = result["structuredContent"]
    assert sc["workflow_id"] == handle.task_id
    assert sc["outcome"] == "distributed"
    assert "final" in sc["phases"]
    by_name = {d["name"]: d for d in sc["deliverables"]}
    assert all(d["uris"] for d in sc["deliverables"]), sc["deliverables"]
    assert by_name["scene_images"]["uris"][0].startswith("http://")
    assert by_name["subtitles"]["uris"][0].startswith("file:///")
    assert by_name["story"]["inline"]
    assert by_name["story"]["uris"][0].startswith(f"workflow://{handle.task_id}/checkpoints/")
    assert len(sc["decisions"]) == answered
    assert all(d["decided_by"] == "local" and d["comment"] == "from the task test" for d in sc["decisions"])
    assert sc["agent_executions"]["total"] > 10
    assert sum(sc["agent_executions"]["by_agent"].values()) == sc["agent_executions"]["total"]
    assert isinstance(task["ttlMs"], int)


async def _drive_preview_to_completed(client: Client) -> dict[str, Any]:
    """A preview started as a task and polled through tasks/get alone until it is completed."""
    assert (client.server_capabilities.extensions or {}).get(TASKS_EXTENSION) == {}
    handle = await start(client, project_id="p1", workflow="preview", brief="a lighthouse at dusk")
    assert handle.status == "working"
    task = await poll(client, handle.task_id, lambda t: t["status"] not in {"working", "input_required"})
    assert task["status"] == "completed", task
    assert task["result"]["structuredContent"]["workflow_id"] == handle.task_id
    return task


async def test_a_completed_tasks_result_is_valid_for_every_tool_that_answers_with_a_task(
    orch: Orchestrator,
) -> None:
    """A validating client checks a task's result against the tool's outputSchema: it passes for each."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        task = await _drive_preview_to_completed(client)
        schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
    sc = task["result"]["structuredContent"]
    for tool in ("start_workflow", "fork_workflow", "retry_step"):
        jsonschema.validate(sc, schemas[tool])
    assert sc["status"] == "completed"
    assert sc["deliverables"]
    assert sc["summary"] == sc["result"]


@pytest.mark.parametrize("transport", ["http", "ws-auto"])
async def test_tasks_work_over_http_and_websocket(served: tuple[Orchestrator, str], transport: str) -> None:
    """The same task flow over the network transports of 2026-07-28 (the extension is of that generation)."""
    o, key = served
    async with connect(o, transport, key, extensions=[TasksClient()]) as client:
        await _drive_preview_to_completed(client)


async def test_tasks_work_over_stdio(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """And over stdio (a subprocess server), where desktop clients run it."""
    async with stdio_client(
        redis_url, key_prefix, tmp_path, mode="auto", extensions=[TasksClient()]
    ) as client:
        await _drive_preview_to_completed(client)


async def test_working_status_message_says_where_the_production_is(orch: Orchestrator) -> None:
    """queued/running/paused map to working with a message a person can read: phase, step, percent, waits."""
    tasks = TasksExtension(orch.service, Caller())
    now = time.time()
    base: dict[str, Any] = {"workflow_id": "wf-0123456789abcdef", "project_id": "p", "workflow": "movie_production",
            "phase": "character_development", "step": "character_creator", "percent": 42.0, "message": "running",
            "agents_running": ["character_creator", "voice_creator"], "pending_decisions": [], "last_error": "",
            "created_at": now - 60, "updated_at": now}  # fmt: skip
    running = await tasks.task(
        WorkflowStatus(**base, status=Status.RUNNING, waiting_reason="brain (circuit open)")
    )
    assert running["status"] == "working"
    assert running["statusMessage"] == (
        "character_development: character_creator (42%); agents running: character_creator, voice_creator; "
        "waiting for brain (circuit open)"
    )
    paused = await tasks.task(WorkflowStatus(**{**base, "status": "paused", "agents_running": []}))
    assert (
        paused["statusMessage"]
        == "paused at character_development: character_creator (42%); resume_workflow continues it"
    )
    queued = await tasks.task(
        WorkflowStatus(**{**base, "status": "queued", "phase": "", "step": "", "message": ""})
    )
    assert queued["statusMessage"] == "queued: waiting for a worker"
    for task in (running, paused, queued):
        assert isinstance(task["ttlMs"], int)
        assert task["ttlMs"] >= orch.store.retention_seconds * 1000 + 60_000
        assert task["pollIntervalMs"] > 0
        assert task["createdAt"].endswith("Z")


async def test_a_preview_completes_with_its_keyframe_uri(orch: Orchestrator) -> None:
    """A workflow without decisions goes working -> completed; its deliverables carry their URIs."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="p1", workflow="preview", brief="dunes")
        done = await poll(client, handle.task_id, lambda t: t["status"] == "completed")
    keyframe = done["result"]["structuredContent"]["deliverables"][1]
    assert keyframe["name"] == "keyframe"
    assert keyframe["uris"][0].endswith(".png")


async def test_client_without_the_extension_sees_todays_result_and_32021(orch: Orchestrator) -> None:
    """No declaration: start_workflow answers as before; tasks/* answer -32021 naming the extension."""
    async with Client(orch.mcp) as client:
        started = structured(
            await client.call_tool("start_workflow", {"project_id": "p1", "workflow": "preview"})
        )
        wid = started["workflow_id"]
        for request in (
            GetTask(params=TaskIdParams(task_id=wid)),
            CancelTask(params=TaskIdParams(task_id=wid)),
        ):
            with pytest.raises(MCPError) as err:
                await send(client, request)
            assert err.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
            assert err.value.error.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    assert (await orch.store.get(wid)) is not None


async def test_tasks_result_and_tasks_list_do_not_exist(orch: Orchestrator) -> None:
    """The 2025-11-25 methods are not served: -32601."""

    class Raw(types.Request[types.RequestParams | None, str]):
        params: types.RequestParams | None = None

    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        for method in ("tasks/result", "tasks/list"):
            with pytest.raises(MCPError) as err:
                await send(client, Raw(method=method, params=types.RequestParams()))
            assert err.value.error.code == types.METHOD_NOT_FOUND


async def test_another_projects_task_is_not_found(orch: Orchestrator) -> None:
    """A key scoped to another project gets 'not found' from tasks/get, tasks/update and tasks/cancel."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="alpha", workflow="preview")
    stranger = build_mcp_server(
        orch.service, orch.store, orch.notifier, default_caller=Caller(name="beta-key", projects=("beta",))
    )
    async with Client(stranger, extensions=[TasksClient()]) as other:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: get(other, handle.task_id),
            lambda: update(other, handle.task_id, {}),
            lambda: send(other, CancelTask(params=TaskIdParams(task_id=handle.task_id))),
            lambda: get(other, "wf-0000000000000000"),
        ]
        for call in calls:
            with pytest.raises(MCPError) as err:
                await call()
            assert err.value.error.code == types.INVALID_PARAMS
            assert "not found" in err.value.error.message
    assert (await orch.store.get(handle.task_id)).status != "cancelled"  # type: ignore[union-attr]


async def test_conflicting_answer_is_refused_and_the_same_answer_is_idempotent(orch: Orchestrator) -> None:
    """tasks/update goes through the decision ledger: repeat accepted, a different answer refused, audited."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="p1", options={"scenes": 1, "characters": 1})
        task = await poll(client, handle.task_id, lambda t: t["status"] == "input_required")
        key = next(iter(task["inputRequests"]))
        options = task["inputRequests"][key]["params"]["requestedSchema"]["properties"]["choice"]["enum"]
        with pytest.raises(MCPError) as bad:
            await update(client, handle.task_id, {key: {"action": "accept", "content": {"choice": "nope"}}})
        assert "is not one of" in bad.value.error.message
        assert await orch.store.decisions(handle.task_id) == {}
        first = {key: {"action": "accept", "content": {"choice": options[0]}}}
        await update(client, handle.task_id, first)
        await update(client, handle.task_id, first)
        with pytest.raises(MCPError) as conflict:
            await update(
                client, handle.task_id, {key: {"action": "accept", "content": {"choice": options[1]}}}
            )
        assert conflict.value.error.code == types.INVALID_PARAMS
        assert "already taken" in conflict.value.error.message
        assert options[0] in conflict.value.error.message
        # a key that was never issued is ignored, as the extension says
        await update(client, handle.task_id, {"not-a-key": {"action": "accept", "content": {"choice": "x"}}})
    ledger = await orch.store.decisions(handle.task_id)
    assert list(ledger) == [key]
    assert ledger[key]["choice"] == options[0]
    assert ledger[key]["by"] == "local"
    events = [e for e in await orch.store.events(handle.task_id) if e["what"] == "decision.submitted"]
    assert len(events) == 1


async def test_tasks_cancel_cancels_the_workflow(orch: Orchestrator) -> None:
    """tasks/cancel cancels the workflow; tasks/get then answers cancelled; cancelling again is acknowledged."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="p1", options={"scenes": 1, "characters": 1})
        await poll(client, handle.task_id, lambda t: t["status"] == "input_required")
        cancel = CancelTask(params=TaskIdParams(task_id=handle.task_id))
        assert (await send(client, cancel))["resultType"] == "complete"
        task = await poll(client, handle.task_id, lambda t: t["status"] != "input_required")
        assert task["status"] == "cancelled"
        assert "inputRequests" not in task
        assert (await send(client, cancel))["resultType"] == "complete"
    assert (await orch.store.get(handle.task_id)).status == "cancelled"  # type: ignore[union-attr]


async def test_a_failed_workflow_is_a_failed_task_naming_step_and_retry(orch: Orchestrator) -> None:
    """failed -> failed with an error naming the step and retry_step; retry_step answers with the same task."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="p1", workflow="preview")
        await poll(client, handle.task_id, lambda t: t["status"] == "completed")
        await orch.store.update(handle.task_id, {"status": "failed", "phase": "final_assembly", "step": "assemble",
                                                 "last_error": "keyframe missing"}, event="test.failed")  # fmt: skip
        task = await get(client, handle.task_id)
        assert task["status"] == "failed"
        assert "final_assembly: assemble" in task["error"]["message"]
        assert "retry_step" in task["error"]["message"]
        assert task["error"]["data"]["retry"] == {
            "tool": "retry_step",
            "arguments": {"workflow_id": handle.task_id},
        }
        again = await client.session.call_tool(
            "retry_step", {"workflow_id": handle.task_id}, allow_claimed=True
        )
        assert isinstance(again, TaskHandle)
        assert again.task_id == handle.task_id
        assert again.status == "working"


class TaskNote(BaseModel):
    """notifications/tasks params, every key kept."""

    model_config = ConfigDict(extra="allow")


class ListenParams(types.RequestParams):
    """subscriptions/listen params with the extension's taskIds."""

    notifications: dict[str, Any]


class Listen(types.Request[ListenParams, Literal["subscriptions/listen"]]):
    """subscriptions/listen."""

    method: Literal["subscriptions/listen"] = "subscriptions/listen"


class TasksListener(TasksClient):
    """TasksClient that also hears notifications/tasks."""

    def __init__(self) -> None:
        self.send, self.notes = anyio.create_memory_object_stream[dict[str, Any]](100)

    def notifications(self) -> list[NotificationBinding[Any]]:
        """Observe notifications/tasks."""

        async def heard(params: TaskNote) -> None:
            await self.send.send(params.model_dump())

        return [NotificationBinding(method="notifications/tasks", params_type=TaskNote, handler=heard)]


async def test_notifications_tasks_reach_a_listen_stream_on_another_instance(
    open_orch: OpenOrchestrator, orch: Orchestrator
) -> None:
    """A listen stream on instance B with taskIds hears input_required and completed of a task run on A."""
    settings_b = orch.settings.model_copy(update={"instance_id": orch.settings.instance_id + "-b"})
    async with open_orch(engine=False, http=False, base=settings_b) as b:
        ears = TasksListener()
        async with (
            Client(orch.mcp, extensions=[TasksClient()]) as ca,
            Client(b.mcp, extensions=[ears]) as cb,
            anyio.create_task_group() as tg,
        ):
            handle = await start(ca, project_id="p1", options={"scenes": 1, "characters": 1})
            tg.start_soon(send, cb, Listen(params=ListenParams(notifications={"taskIds": [handle.task_id]})))
            statuses = []
            with anyio.fail_after(60):
                async for note in ears.notes:
                    assert note["taskId"] == handle.task_id
                    statuses.append(note["status"])
                    if note["status"] == "input_required":
                        await update(ca, handle.task_id, answer_first(note))
                    if note["status"] == "completed":
                        break
            tg.cancel_scope.cancel()
    assert "input_required" in statuses
    assert "working" in statuses
    assert note["result"]["structuredContent"]["outcome"] == "distributed"


async def test_listen_for_tasks_without_the_extension_is_refused(orch: Orchestrator) -> None:
    """subscriptions/listen with taskIds from a client that did not declare the extension: -32021."""
    async with Client(orch.mcp) as client:
        with pytest.raises(MCPError) as err:
            await send(
                client, Listen(params=ListenParams(notifications={"taskIds": ["wf-0123456789abcdef"]}))
            )
        assert err.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_fork_workflow_answers_with_the_new_workflows_task(orch: Orchestrator) -> None:
    """fork_workflow by a declaring client: a task whose id is the new workflow's id, which then completes."""
    async with Client(orch.mcp, extensions=[TasksClient()]) as client:
        handle = await start(client, project_id="p1", workflow="preview", brief="a fork")
        await poll(client, handle.task_id, lambda t: t["status"] == "completed")
        cps = (await orch.service.checkpoints(Caller(), handle.task_id)).checkpoints
        fork = await client.session.call_tool(
            "fork_workflow",
            {"workflow_id": handle.task_id, "checkpoint_id": cps[-1].checkpoint_id},
            allow_claimed=True,
        )
        assert isinstance(fork, TaskHandle)
        assert fork.task_id != handle.task_id
        done = await poll(client, fork.task_id, lambda t: t["status"] in {"completed", "failed"})
    assert done["status"] == "completed", done
    assert (await orch.store.get(fork.task_id)).forked_from.startswith(handle.task_id)  # type: ignore[union-attr]
