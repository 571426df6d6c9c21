"""Traces of a production (the SDK's in-memory exporter): one trace from the MCP request through the runs,
every graph step, agent and outside call and the webhooks, across a crash and resume on another instance."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
from mcp import Client
from opentelemetry.sdk.trace import ReadableSpan

from server import Orchestrator, Sandbox
from tests.server.clients import connect
from tests.server.conftest import OpenOrchestrator, structured, wait_status
from tests.traces import Spans

SMALL: dict[str, Any] = {"scenes": 2, "characters": 1, "auto_approve": True}


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def _of(spans: Spans, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans.all if s.context.trace_id == trace_id]


async def _steps_started(orch: Orchestrator, wid: str) -> list[str]:
    return [e["data"]["step"] for e in await orch.store.events(wid) if e["what"] == "step.started"]


def _check_tree(spans: Spans, root: ReadableSpan, mine: list[ReadableSpan]) -> None:
    """Runs under the root, steps under runs, agents under steps, outside calls under steps (most through an
    agent)."""
    for s in mine:
        up = [a.name for a in spans.ancestors(s)]
        if root.name not in up and s != root:
            continue  # the request and the client's side of it
        if s.name.startswith("run "):
            assert spans.parent(s) == root, (s.name, up)
        elif s.name.startswith("step "):
            assert up[-1] == root.name or any(a.startswith("run ") for a in up), (s.name, up)
        elif s.name.startswith("agent "):
            assert up, s.name
            assert up[0].startswith("step "), (s.name, up)
        elif s.name.startswith(("task-service ", "auto-movie ", "brain ", "MCP send tools/call")):
            assert any(a.startswith("step ") for a in up), (s.name, up)  # mostly through an agent


async def test_one_production_is_one_trace_of_every_step_agent_and_outside_call(
    served: tuple[Orchestrator, str], standins: Sandbox, spans: Spans
) -> None:
    """Over Streamable HTTP (the client's span reaches the server in `_meta`): the request, the production's
    root, its run, a span per step execution (every step the workflow reported), per agent execution (as many
    as it charged), per job (as many as the Task Service got, each with its traceparent in the metadata), the
    Task Service, Auto-Movie and Brain calls beneath their agents, and each job's webhook beneath its submit."""
    orch, key = served
    async with connect(orch, "http", key) as client:
        wid = structured(await client.call_tool("start_workflow", {"project_id": "p1", "options": SMALL}))[
            "workflow_id"
        ]
        st = await wait_status(client, wid, limit=60)
    assert st["status"] == "completed", st["last_error"]
    with anyio.fail_after(5):  # the last webhooks' spans end as their answers go out
        while len(spans.named("webhook task-service")) < len(standins.task_service.tasks):
            await anyio.sleep(0.05)

    (root,) = [
        s for s in spans.all if s.name == "production movie_production" and _attr(s, "mo.workflow_id") == wid
    ]
    mine = _of(spans, root.context.trace_id)
    request = spans.parent(root)
    assert request is not None
    assert request.name == "tools/call start_workflow"
    assert spans.parent(request) is not None  # the client's own span, carried in the request's _meta
    elsewhere = {s.name for s in spans.all if _attr(s, "mo.workflow_id") == wid and s not in mine}
    assert elsewhere <= {"tools/call get_status"}, elsewhere  # only the status reads are traces of their own

    steps = [s for s in mine if s.name.startswith("step ")]
    assert sorted(s.name.removeprefix("step ") for s in steps) == sorted(await _steps_started(orch, wid))
    used = await orch.store.budget_used(wid)
    assert len([s for s in mine if s.name.startswith("agent ")]) == used["agent_executions"]
    jobs = [s for s in mine if s.name.startswith("job ")]
    assert len(jobs) == used["outside_jobs"] == len(standins.task_service.tasks)
    submits = [s for s in mine if s.name == "task-service POST /api/v1/tasks/submit"]
    assert len(submits) == len(jobs)
    sent = [t["metadata"].get("traceparent", "") for t in standins.task_service.tasks.values()]
    assert all(tp.split("-")[1] == format(root.context.trace_id, "032x") for tp in sent), sent
    # The service echoes the submit's metadata in every webhook, a failure's too (docs/contracts/task-service.md):
    # each webhook continues its own job's trace.
    for hook in [s for s in mine if s.name == "webhook task-service"]:
        assert any(a.name.startswith("job ") for a in spans.ancestors(hook)), _attr(hook, "mo.task_id")
    assert len([s for s in mine if s.name == "webhook task-service"]) == len(jobs)
    assert [s for s in mine if s.name.startswith("auto-movie GET /api/v1/projects/")]
    assert [s for s in mine if s.name.startswith("MCP send tools/call")]  # the Brain, traced by the SDK
    _check_tree(spans, root, mine)
    (ended,) = [s for s in mine if s.name == "production movie_production ended"]
    assert _attr(ended, "mo.status") == "completed"


async def test_a_production_stays_one_trace_across_a_crash_and_the_resume_on_another_instance(
    open_orch: OpenOrchestrator, standins: Sandbox, spans: Spans
) -> None:
    """Instance 1 is killed (nothing handed back, its unfinished spans never exported) while a job of the
    production is in flight; instance 2 reclaims the run after the lease: its run is a child of the same root
    (kept in Redis), the step that was in flight runs again there and awaits the job instance 1 submitted,
    which is not submitted again."""
    standins.task_service.latency = 1.5
    async with open_orch(sandbox=standins, instance_id="one") as one:
        async with Client(one.mcp) as client:
            wid = structured(
                await client.call_tool("start_workflow", {"project_id": "p1", "options": SMALL})
            )["workflow_id"]
        with anyio.fail_after(30):
            while not standins.task_service.tasks:
                await anyio.sleep(0.02)
        in_flight = next(iter(standins.task_service.tasks.values()))["metadata"]["step"]
        assert one.engine is not None
        with spans.pause():
            await one.engine.halt()
        async with open_orch(sandbox=standins, instance_id="two") as two, Client(two.mcp) as client:
            st = await wait_status(client, wid, limit=60)
        assert st["status"] == "completed", st["last_error"]

    (root,) = [
        s for s in spans.all if s.name == "production movie_production" and _attr(s, "mo.workflow_id") == wid
    ]
    mine = _of(spans, root.context.trace_id)
    runs = [s for s in mine if s.name == "run movie_production"]
    assert [_attr(r, "mo.instance") for r in runs] == ["two"]  # instance 1's run never ended: never exported
    assert all(spans.parent(r) == root for r in runs)
    assert {_attr(s, "mo.workflow_id") for s in spans.all if _attr(s, "mo.workflow_id")} == {wid}
    elsewhere = {s.name for s in spans.all if _attr(s, "mo.workflow_id") == wid and s not in mine}
    assert elsewhere <= {"tools/call get_status"}, elsewhere
    resumed = {s.name for s in mine if any(a in runs for a in spans.ancestors(s))}
    job_step = in_flight.split(":")[0].split(".")[0]
    assert any(n.startswith("step ") and job_step.split("_")[0] in n for n in resumed), (in_flight, resumed)
    assert standins.task_service.submits_by_key[f"{wid}:{in_flight}"] == 1
    _check_tree(spans, root, mine)


def test_with_no_otel_variables_nothing_is_installed_and_nothing_traced() -> None:
    """A process of ours with no OTEL_* variables installs no provider, makes no span and carries no context."""
    code = (
        "import server.process, server.telemetry as t\n"
        "from adapters import tracing\n"
        "assert not t.configure_tracing(service_name='mo', instance='i', sdk_disabled=False, exporter='', endpoint='')\n"
        "assert not t.configure_tracing(service_name='mo', instance='i', sdk_disabled=False, exporter='none', "
        "endpoint='http://127.0.0.1:4318')\n"
        "assert not tracing.enabled() and tracing.carrier() == {}\n"
        "with tracing.span('x') as s: assert s is None\n"
        # no provider installed: the API's proxy (langsmith and redis-py import parts of the SDK when it is
        # installed, and use them only when asked to)
        "from opentelemetry import trace\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider', trace.get_tracer_provider()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
