"""`adapters.tracing`: W3C context kept and continued, the httpx transport's CLIENT spans, a span per graph
step execution; and nothing at all while tracing is off."""

from __future__ import annotations

import json
from typing import Any, TypedDict

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, interrupt
from opentelemetry.trace import StatusCode

from adapters import LLMWriter, tracing
from server.telemetry import export_wanted
from tests.traces import Spans


def _echo(seen: list[httpx.Request], status: int = 200, body: Any = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body if body is not None else {"ok": True})

    return httpx.MockTransport(handler)


async def test_the_transport_sends_the_traceparent_of_its_client_span(spans: Spans) -> None:
    seen: list[httpx.Request] = []
    client = httpx.AsyncClient(transport=tracing.TracingTransport(_echo(seen), "task-service"))
    with tracing.span("job generate_image"):
        await client.get("http://127.0.0.1:9/api/v1/projects/p1/tasks", params={"page": 1})
    await client.aclose()
    (call,) = spans.named("task-service GET")
    assert call.name == "task-service GET /api/v1/projects/{project_id}/tasks"
    assert call.attributes is not None
    assert call.attributes["http.response.status_code"] == 200
    assert seen[0].headers["traceparent"] == tracing.carrier(_context(call))["traceparent"]
    parent = spans.parent(call)
    assert parent is not None
    assert parent.name == "job generate_image"


def _context(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(trace.NonRecordingSpan(span.context))


async def test_an_answer_of_4xx_or_5xx_marks_the_call_an_error(spans: Spans) -> None:
    client = httpx.AsyncClient(transport=tracing.TracingTransport(_echo([], status=503), "auto-movie"))
    await client.put("http://127.0.0.1:9/api/v1/projects/42")
    await client.aclose()
    (call,) = spans.all
    assert call.name == "auto-movie PUT /api/v1/projects/{project_id}"
    assert call.status.status_code == StatusCode.ERROR
    assert call.attributes is not None
    assert call.attributes["error.type"] == "503"


async def test_the_llm_writer_is_traced_through_its_client(spans: Spans) -> None:
    seen: list[httpx.Request] = []
    answer = {"choices": [{"message": {"content": json.dumps({"props": ["a hat"]})}}]}
    http = httpx.AsyncClient(transport=tracing.TracingTransport(_echo(seen, body=answer), "llm"))
    writer = LLMWriter("http://127.0.0.1:9/v1", "key", "model", http=http)
    with tracing.span("agent prop_master"):
        assert await writer.write("props", {}) == {"props": ["a hat"]}
    await http.aclose()
    (call,) = spans.named("llm ")
    assert call.name == "llm POST /v1/chat/completions"
    assert "traceparent" in seen[0].headers


async def test_while_tracing_is_off_nothing_is_made_or_sent() -> None:
    seen: list[httpx.Request] = []
    client = httpx.AsyncClient(transport=tracing.TracingTransport(_echo(seen), "llm"))
    with tracing.span("anything") as made:
        assert made is None
        await client.get("http://127.0.0.1:9/x")
    await client.aclose()
    assert "traceparent" not in seen[0].headers
    assert tracing.carrier() == {}
    assert (
        tracing.context_of({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}) is None
    )


async def test_a_stored_context_is_continued_and_linked(spans: Spans) -> None:
    root = tracing.start("production x", mo_workflow_id="wf-1")
    assert root is not None
    stored = json.loads(json.dumps(tracing.carrier_of(root)))  # as in Redis
    root.end()
    with tracing.span(
        "run x", parent=tracing.context_of(stored), links=tracing.link_of({"traceparent": "junk"})
    ):
        pass
    run = spans.named("run x")[0]
    assert spans.parent(run) == spans.named("production x")[0]
    assert run.links == ()
    assert tracing.context_of({}) is None


class _State(TypedDict, total=False):
    n: int
    answer: str


async def test_each_step_execution_is_a_span_interrupts_are_not_errors_and_retries_are_attempts(
    spans: Spans,
) -> None:
    """A sync and an async node, one that fails once and is retried, one that asks a human."""
    calls = {"flaky": 0}

    def plain(state: _State) -> _State:
        return {"n": state.get("n", 0) + 1}

    async def flaky(state: _State) -> _State:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("once")
        return {"n": state.get("n", 0) + 1}

    async def ask(state: _State) -> _State:
        return {"answer": str(interrupt({"question": "ok?"}))}

    b: StateGraph[_State, Any, Any, Any] = StateGraph(_State)
    b.add_node("plain", tracing.traced_node("plain", plain))
    b.add_node(
        "flaky",
        tracing.traced_node("flaky", flaky),
        retry_policy=RetryPolicy(initial_interval=0.01, retry_on=RuntimeError),
    )
    b.add_node("ask", tracing.traced_node("ask", ask))
    b.add_edge(START, "plain")
    b.add_edge("plain", "flaky")
    b.add_edge("flaky", "ask")
    b.add_edge("ask", END)
    graph = b.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    with tracing.span("run"):
        await graph.ainvoke({"n": 0}, config)
    with tracing.span("run"):
        done = await graph.ainvoke(Command(resume="yes"), config)
    assert done["answer"] == "yes"
    names = [s.name for s in spans.all if s.name.startswith("step ")]
    assert names == ["step plain", "step flaky", "step flaky", "step ask", "step ask"]
    flakies = spans.named("step flaky")
    assert [s.status.status_code for s in flakies] == [StatusCode.ERROR, StatusCode.UNSET]
    asked = spans.named("step ask")
    assert asked[0].status.status_code == StatusCode.UNSET
    assert asked[0].attributes is not None
    assert asked[0].attributes["mo.outcome"] == "GraphInterrupt"
    assert asked[0].attributes["langgraph.node"] == "ask"
    assert all(spans.parent(s) is not None for s in spans.all if s.name.startswith("step "))


@pytest.mark.parametrize(
    ("disabled", "exporter", "endpoint", "wanted"),
    [
        (False, "", "", False),
        (False, "", "http://127.0.0.1:4318", True),
        (False, "otlp", "", True),
        (False, "console", "", True),
        (False, "none", "http://127.0.0.1:4318", False),
        (True, "otlp", "http://127.0.0.1:4318", False),
    ],
)
def test_export_is_wanted_only_when_the_otel_variables_ask(
    disabled: bool, exporter: str, endpoint: str, wanted: bool
) -> None:
    assert export_wanted(sdk_disabled=disabled, exporter=exporter, endpoint=endpoint) is wanted
