"""The spans a test made, from the SDK's in-memory exporter: one provider per session, collecting only while
a test asks (`Spans`), so the rest of the suite keeps nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import tracing

__all__ = ["Spans", "provider"]

_provider: TracerProvider | None = None
_collecting = InMemorySpanExporter()


class _WhileAsked(SimpleSpanProcessor):
    """Exports ended spans only while a test collects them."""

    active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


_processor = _WhileAsked(_collecting)


def provider() -> TracerProvider:
    """The session's provider (installed on first use; the API's tracers are proxies and follow it)."""
    global _provider  # noqa: PLW0603 - the SDK allows one global provider per process
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": "movie-orchestrator-tests"}))
        _provider.add_span_processor(_processor)
        trace.set_tracer_provider(_provider)
    return _provider


class Spans:
    """The spans ended while the test collects (`start`), with the tree they form."""

    def start(self) -> Spans:
        """Collect from now on (tracing on)."""
        provider()
        _collecting.clear()
        tracing.set_enabled(True)
        _processor.active = True
        return self

    def stop(self) -> None:
        """Stop collecting (tracing off) and forget."""
        _processor.active = False
        tracing.set_enabled(False)
        _collecting.clear()

    def pause(self) -> _Paused:
        """A block whose ended spans are not collected (what a killed process never exported)."""
        return _Paused()

    @property
    def all(self) -> list[ReadableSpan]:
        """Every span collected, in the order they ended."""
        return list(_collecting.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        """The spans whose name starts with `prefix`."""
        return [s for s in self.all if s.name.startswith(prefix)]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        """A span's parent among those collected."""
        if span.parent is None:
            return None
        return next((s for s in self.all if s.context.span_id == span.parent.span_id), None)

    def ancestors(self, span: ReadableSpan) -> Iterator[ReadableSpan]:
        """A span's parent, its parent's parent, ... (among those collected)."""
        up = self.parent(span)
        while up is not None:
            yield up
            up = self.parent(up)

    def traces(self, spans: list[ReadableSpan] | None = None) -> Counter[int]:
        """Spans per trace id."""
        return Counter(s.context.trace_id for s in (self.all if spans is None else spans))

    def tree(self, root: ReadableSpan, depth: int = 0) -> str:
        """The tree under `root` as indented names (for failure messages)."""
        lines = ["  " * depth + root.name]
        for child in self.all:
            if child.parent is not None and child.parent.span_id == root.context.span_id:
                lines.append(self.tree(child, depth + 1))
        return "\n".join(lines)


class _Paused:
    def __enter__(self) -> None:
        _processor.active = False

    def __exit__(self, *_: object) -> None:
        _processor.active = True
