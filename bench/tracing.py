"""Benchmark 12: what traces cost.

One orchestrator with the stand-ins in process (Task Service jobs of 50 ms), N default-size productions at
once, driven through the service (no MCP requests: their SDK spans are not ours), in alternating rounds with
tracing off and on. On: the SDK with a batch processor and an exporter that encodes every span as OTLP
protobuf and drops the bytes (the CPU of export without a collector's). Reported: this process's CPU per
production and per agent execution, spans per production, and the cost of one span of ours off and on.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from adapters import TERMINAL, tracing
from bench.concurrency import in_process_settings
from server import Caller, Orchestrator, open_orchestrator
from server.telemetry import configure_logging

__all__ = ["TracingResult", "run"]

OPTIONS = {"auto_approve": True}


class _Encoding(SpanExporter):
    """Encodes spans as an OTLP/HTTP exporter would, then drops them; counts them."""

    def __init__(self) -> None:
        self.spans = 0
        self.active = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.active:
            encode_spans(spans).SerializeToString()
            self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@dataclass
class TracingResult:
    """Figures of benchmark 12."""

    productions: int
    cpu_off: list[float] = field(default_factory=list)  # CPU seconds per production, per round
    cpu_on: list[float] = field(default_factory=list)
    agents: float = 0.0  # agent executions per production
    spans: float = 0.0  # spans per production (on)
    span_us: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def added_ms_per_agent(self) -> float:
        """CPU added per agent execution, in ms."""
        return (statistics.median(self.cpu_on) - statistics.median(self.cpu_off)) * 1000 / max(self.agents, 1)

    def added_share(self) -> float:
        """CPU added, as a share of the CPU with tracing off."""
        return statistics.median(self.cpu_on) / statistics.median(self.cpu_off) - 1

    def headline(self) -> str:
        """One line: what tracing adds."""
        if self.error or not self.cpu_on:
            return f"- Tracing: NOT measured ({self.error[:200]})."
        return (f"- Tracing: on (SDK, batch, OTLP encoding) adds {self.added_ms_per_agent():+.2f} ms CPU per agent "
                f"execution ({self.added_share():+.1%} of a production's CPU, {self.spans:.0f} spans each); off: "
                f"{self.span_us.get('off', 0):.2f} µs per span site.")  # fmt: skip

    def table(self) -> str:
        """Markdown for BENCHMARKS.md."""
        if self.error or not self.cpu_on:
            return f"### 12. Tracing cost\n\nNot measured: {self.error}"
        off, on = statistics.median(self.cpu_off), statistics.median(self.cpu_on)
        return "\n".join([
            "### 12. Tracing cost\n",
            f"{self.productions} default-size `movie_production`s at once in one process with the stand-ins (jobs of "
            "50 ms), driven through the service; rounds alternate tracing off and on (on: SDK provider, batch "
            "processor, every span encoded as OTLP protobuf and dropped). CPU of the whole process (stand-ins "
            "included) per production.\n",
            "| tracing | CPU per production (rounds) | median | per agent execution | spans per production |",
            "|---|---|---:|---:|---:|",
            f"| off | {', '.join(f'{c * 1000:.0f}' for c in self.cpu_off)} ms | {off * 1000:.0f} ms | "
            f"{off * 1000 / max(self.agents, 1):.2f} ms | 0 |",
            f"| on | {', '.join(f'{c * 1000:.0f}' for c in self.cpu_on)} ms | {on * 1000:.0f} ms | "
            f"{on * 1000 / max(self.agents, 1):.2f} ms | {self.spans:.0f} |",
            f"\nAdded: {self.added_ms_per_agent():+.2f} ms CPU per agent execution ({self.added_share():+.1%}). "
            f"One span of ours (3 attributes, made current): {self.span_us.get('off', 0):.2f} µs off, "
            f"{self.span_us.get('on', 0):.1f} µs on (made, ended, queued; export in its own thread).",
        ])  # fmt: skip


async def _one(orch: Orchestrator, project: str) -> str:
    started = await orch.service.start_workflow(Caller(), project_id=project, workflow="movie_production",
                                                options=OPTIONS)  # fmt: skip
    while True:
        st = await orch.service.wait_status(Caller(), started.workflow_id, 120, until=["completed", "failed"])
        if st.status in TERMINAL:
            return (
                started.workflow_id if st.status == "completed" else f"! {st.status}: {st.last_error[:200]}"
            )


async def _round(orch: Orchestrator, n: int) -> tuple[float, list[str]]:
    cpu = time.process_time()
    wids = await asyncio.gather(*(_one(orch, f"trace{i}") for i in range(n)))
    return (time.process_time() - cpu) / n, list(wids)


def _span_cost(n: int = 20_000) -> float:
    attrs = {"mo.workflow_id": "wf-0123456789abcdef", "mo.agent": "story_writer", "mo.step": "story"}
    t = time.perf_counter()
    for _ in range(n):
        with tracing.span("agent story_writer", attributes=attrs):
            pass
    return (time.perf_counter() - t) / n * 1e6


async def run(redis_url: str, tmp: Path, *, productions: int = 10, rounds: int = 2) -> TracingResult:
    """Run benchmark 12 on `redis_url` in a key prefix of its own."""
    out = TracingResult(productions=productions)
    configure_logging("json", "warning", str(tmp / "tracing.log"))
    exporter = _Encoding()
    provider = TracerProvider(resource=Resource.create({"service.name": "movie-orchestrator-bench"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    settings = in_process_settings(redis_url, tmp, "trc")
    try:
        async with open_orchestrator(settings, sandbox=True, task_latency=0.05) as (orch, _):
            out.span_us["off"] = _span_cost()
            await _round(orch, 2)  # warm: graphs compiled, connections open
            for _ in range(rounds):
                for on in (False, True):
                    tracing.set_enabled(on)
                    exporter.active = on
                    before = exporter.spans
                    cpu, wids = await _round(orch, productions)
                    if on:
                        provider.force_flush()
                        out.spans = (exporter.spans - before) / productions
                    tracing.set_enabled(False)
                    exporter.active = False
                    failed = [w for w in wids if w.startswith("!")]
                    if failed:
                        out.error = failed[0]
                        return out
                    (out.cpu_on if on else out.cpu_off).append(cpu)
                    used: dict[str, Any] = await orch.store.budget_used(wids[0])
                    out.agents = float(used.get("agent_executions", 0))
            tracing.set_enabled(True)
            out.span_us["on"] = _span_cost(5_000)
            tracing.set_enabled(False)
    finally:
        provider.shutdown()
    return out
