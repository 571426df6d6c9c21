"""Decisions asked inline by a waiting get_status, answered through the decision ledger."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from server import Orchestrator, Settings
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, structured, wait_status


@pytest.fixture
async def decider(orch: Orchestrator) -> tuple[Orchestrator, str]:
    """The conftest's orchestrator, with a key that may decide (not an admin key)."""
    key, _ = await orch.keys.create("director", ["*"], "decide")
    return orch, key


class Person:
    """The person at the client: answers every form with its first option."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def answer(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(params.message)
        options = params.requested_schema["properties"]["choice"]["enum"]
        return types.ElicitResult(action="accept", content={"choice": options[0], "comment": "asked inline"})


_START = {"project_id": "p", "brief": "a fox", "options": {"scenes": 1, "characters": 1}}


@pytest.mark.parametrize("transport", ["memory-auto", "memory-legacy", "http", "ws", "ws-auto"])
async def test_waiting_get_status_asks_and_the_ledger_records(
    decider: tuple[Orchestrator, str], transport: str
) -> None:
    """A client with form elicitation is asked the pending decision; the answer is recorded as a decision."""
    orch, key = decider
    person = Person()
    async with connect(orch, transport, key, elicitation_callback=person.answer) as c:
        wid = structured(await c.call_tool("start_workflow", _START))["workflow_id"]
        with anyio.fail_after(60):
            st: dict[str, Any] = {}
            while not person.asked:
                st = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 5,
                                                                 "until": ["completed"]}))  # fmt: skip
        assert st["status"] in {"queued", "running", "waiting_decision"}
        decisions = await c.read_resource(f"workflow://{wid}/decisions")
    assert "asks:" in person.asked[0]
    text = decisions.contents[0].text  # type: ignore[union-attr]
    assert '"comment": "asked inline"' in text
    expected_who = "local" if transport.startswith("memory") else "director"
    assert f'"by": "{expected_who}"' in text
    events = await orch.store.events(wid)
    submitted = [e for e in events if e["what"] == "decision.submitted"]
    assert submitted
    assert submitted[0]["who"] == expected_who


async def test_without_elicitation_pending_decisions_stay(decider: tuple[Orchestrator, str]) -> None:
    """A client without elicitation (or stateless HTTP in the handshake era) sees pending_decisions."""
    orch, key = decider
    person = Person()
    async with connect(orch, "http-legacy", key, elicitation_callback=person.answer) as c:
        wid = structured(await c.call_tool("start_workflow", _START))["workflow_id"]
        st = await wait_status(c, wid, ["waiting_decision"])
    assert st["pending_decisions"]
    assert person.asked == []
    async with connect(orch, "http", key) as c:
        st = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 1}))
    assert st["pending_decisions"]


async def test_request_state_answered_on_another_instance(
    open_orch: OpenOrchestrator, decider: tuple[Orchestrator, str], settings: Settings
) -> None:
    """The input-required state minted by one instance is accepted by another (keys shared); a forged or
    replayed-by-another-key state is refused."""
    a, key = decider
    assert a.keys is not None
    other, _ = await a.keys.create("someone-else", ["*"], "decide")
    settings_b = settings.model_copy(update={"instance_id": settings.instance_id + "-b"})
    async with (
        open_orch(engine=False, base=settings_b) as b,
        connect(a, "http", key) as plain,
        connect(a, "http", key, elicitation_callback=Person().answer) as ca,
        connect(b, "http", key, elicitation_callback=Person().answer) as cb,
        connect(b, "http", other, elicitation_callback=Person().answer) as intruder,
    ):
        wid = structured(await plain.call_tool("start_workflow", _START))["workflow_id"]
        await wait_status(plain, wid, ["waiting_decision"])
        args = {"workflow_id": wid, "wait_seconds": 5}
        first = await ca.session.call_tool("get_status", args, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        assert first.input_requests is not None
        assert first.request_state is not None
        ((decision_id, request),) = first.input_requests.items()
        assert isinstance(request, types.ElicitRequest)
        options = request.params.requested_schema["properties"]["choice"]["enum"]  # type: ignore[union-attr]
        answer = {decision_id: types.ElicitResult(action="accept", content={"choice": options[0]})}
        with pytest.raises(MCPError, match="requestState"):
            await cb.session.call_tool("get_status", args, input_responses=answer,  # type: ignore[arg-type]
                                       request_state=first.request_state + "x", allow_input_required=True)  # fmt: skip
        with pytest.raises(MCPError, match="requestState"):
            await intruder.session.call_tool("get_status", args, input_responses=answer,  # type: ignore[arg-type]
                                             request_state=first.request_state, allow_input_required=True)  # fmt: skip
        done = await cb.session.call_tool("get_status", args, input_responses=answer,  # type: ignore[arg-type]
                                          request_state=first.request_state, allow_input_required=True)  # fmt: skip
        assert isinstance(done, types.CallToolResult)
        assert done.structured_content is not None
        assert done.structured_content["status"] in {"queued", "running", "waiting_decision"}
    decided = await a.store.decisions(wid)
    assert decided[decision_id]["choice"] == options[0]
    assert decided[decision_id]["by"] == "director"


@pytest.mark.parametrize("transport", ["ws", "memory-auto"])
async def test_status_after_an_inline_answer_shows_it_answered(
    decider: tuple[Orchestrator, str], transport: str
) -> None:
    """Right after a decision answered inline, get_status no longer lists it as pending (issue 24)."""
    orch, key = decider
    person = Person()
    async with connect(orch, transport, key) as plain:
        wid = structured(await plain.call_tool("start_workflow", _START))["workflow_id"]
        answered = (await wait_status(plain, wid, ["waiting_decision"]))["pending_decisions"][0]["id"]
    async with connect(orch, transport, key, elicitation_callback=person.answer) as c:
        waited = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 5}))
        again = structured(await c.call_tool("get_status", {"workflow_id": wid}))
        decisions = await c.read_resource(f"workflow://{wid}/decisions")
    assert person.asked
    for st in (waited, again):
        assert answered not in [d["id"] for d in st["pending_decisions"]], st
        assert st["status"] != "waiting_decision" or st["pending_decisions"], st
    text = decisions.contents[0].text  # type: ignore[union-attr]
    assert answered in text.split('"answered"')[1]
    assert answered not in text.split('"answered"')[0]
