"""Traces (OpenTelemetry API only): spans of our own, W3C context carried through Redis, jobs and HTTP.

Nothing here installs anything: `server.telemetry.configure_tracing` installs the SDK when the standard
``OTEL_*`` variables ask for export, and turns `enabled()` on. Until then every helper returns at once
(a module flag: 0.3-0.5 µs per span site, where an API no-op span costs ~6 µs), and `carrier()` is empty, so records and
queue entries carry nothing.

A production is one trace: its root span is made when it is created and its context (`carrier()`, the
W3C ``traceparent``) is kept in the workflow's record; every run of it, on any instance and after any
crash, is a child of that root (`context_of`), linked to the request that queued it (`link_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

__all__ = [
    "TracingTransport",
    "annotate",
    "carrier",
    "carrier_of",
    "context_of",
    "continued",
    "enabled",
    "ended",
    "ended_by",
    "event",
    "link_of",
    "route_of",
    "set_enabled",
    "span",
    "start",
    "traced_node",
    "tracer",
]

# A proxy: it follows whatever provider is installed later (configure_tracing, the tests' in-memory one).
tracer = trace.get_tracer("movie-orchestrator")
_ENABLED = False


def enabled() -> bool:
    """Whether spans are recorded (a provider was installed by `server.telemetry.configure_tracing`)."""
    return _ENABLED


def set_enabled(on: bool) -> None:
    """Turn our spans on or off (configure_tracing; tests that install an in-memory provider)."""
    global _ENABLED  # noqa: PLW0603 - a process-wide switch, set once at start
    _ENABLED = on


def carrier(ctx: Context | None = None) -> dict[str, str]:
    """The W3C headers (``traceparent``, ``tracestate``) of a context, the current one by default; ``{}``
    when tracing is off or no span is current."""
    if not _ENABLED:
        return {}
    out: dict[str, str] = {}
    propagate.inject(out, context=ctx)
    return out


def carrier_of(made: Span | None) -> dict[str, str]:
    """The W3C headers of a span (``{}`` for None: tracing off)."""
    return carrier(trace.set_span_in_context(made)) if made is not None else {}


def context_of(headers: Mapping[str, Any] | None) -> Context | None:
    """The context stored headers stand for; None when there are none or they are not a valid span's."""
    if not _ENABLED or not headers or not isinstance(headers.get("traceparent"), str):
        return None
    ctx = propagate.extract({k: str(v) for k, v in headers.items() if k in {"traceparent", "tracestate"}})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextlib.contextmanager
def continued(headers: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the context stored headers stand for the current one for the block (nothing when they stand for
    none, or tracing is off)."""
    ctx = context_of(headers)
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def link_of(headers: Mapping[str, Any] | None) -> list[Link]:
    """A link to the span stored headers stand for (none when they stand for none)."""
    ctx = context_of(headers)
    return [Link(trace.get_current_span(ctx).get_span_context())] if ctx is not None else []


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (the MCP request's, a run's), when tracing is on; ``mo_x`` is
    written ``mo.x``."""
    if _ENABLED:
        trace.get_current_span().set_attributes({k.replace("_", ".", 1): v for k, v in attributes.items()})


def event(name: str, **attributes: Any) -> None:
    """Add an event to the current span, when tracing is on (``mo_x`` is written ``mo.x``)."""
    if _ENABLED:
        trace.get_current_span().add_event(name, {k.replace("_", ".", 1): v for k, v in attributes.items()})


def start(
    name: str,
    *,
    parent: Context | None = None,
    links: list[Link] | None = None,
    since: float | None = None,
    **attributes: Any,
) -> Span | None:
    """A span started (at the epoch time `since`, default now) and not made current; None when tracing is off.
    The caller ends it, or drops it unended to have it never exported."""
    if not _ENABLED:
        return None
    return tracer.start_span(name, context=parent, links=links, start_time=int(since * 1e9) if since else None,
                             attributes={k.replace("_", ".", 1): v for k, v in attributes.items()})  # fmt: skip


def ended(name: str, carrier: Mapping[str, Any] | None, since: float, **attributes: Any) -> None:
    """A span from `since` (epoch seconds) to now under the span `carrier` stands for: how long a whole
    production took, drawn when it ends."""
    made = start(name, parent=context_of(carrier), since=since, **attributes)
    if made is not None:
        made.end()


_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    links: list[Link] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span current for the block (None, and nothing made, when tracing is off). An exception ends it as
    an error, except cancellation and LangGraph's interrupts and drains, which are how runs stop."""
    if not _ENABLED:
        return _OFF
    return _span(name, kind, parent, links, attributes)


@contextlib.contextmanager
def _span(
    name: str,
    kind: SpanKind,
    parent: Context | None,
    links: list[Link] | None,
    attributes: Mapping[str, Any] | None,
) -> Iterator[Span | None]:
    made = tracer.start_span(name, context=parent, kind=kind, links=links, attributes=dict(attributes or {}))
    with trace.use_span(made, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield made
        except BaseException as exc:
            ended_by(made, exc)
            raise


@functools.cache
def _not_errors() -> tuple[type[BaseException], ...]:
    from langgraph.errors import GraphBubbleUp  # interrupts and drains

    return (GraphBubbleUp, asyncio.CancelledError, GeneratorExit)


def ended_by(made: Span, exc: BaseException) -> None:
    """Mark a span ended by `exc`: an error, unless it is how a run stops (its name is kept as the outcome)."""
    if isinstance(exc, _not_errors()):
        made.set_attribute("mo.outcome", type(exc).__name__)
        return
    # The exception's type and message, not its formatted stack (record_exception's), which costs more than
    # the span: a failing agent's error passes through its job, agent and step spans.
    message = str(exc)[:500]
    made.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
    made.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:200]))


def _step_attributes(name: str) -> dict[str, Any]:
    try:
        from langgraph.config import get_config

        meta = get_config().get("metadata", {})
    except RuntimeError:  # not inside a graph run
        return {"langgraph.node": name}
    return {"langgraph.node": name, "langgraph.step": meta.get("langgraph_step", -1),
            "langgraph.checkpoint_ns": meta.get("langgraph_checkpoint_ns", "")}  # fmt: skip


def traced_node(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A LangGraph node (sync or async) with one span ``step <name>`` per execution (each attempt), current
    while it runs, so its agents and outside calls are its children.

    `functools.wraps` keeps the signature LangGraph inspects (runtime, config, writer parameters) and the
    ``__wrapped__`` that `typing.get_type_hints` follows to resolve string annotations.
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def anode(*args: Any, **kwargs: Any) -> Any:
            if not _ENABLED:
                return await fn(*args, **kwargs)
            with span(f"step {name}", attributes=_step_attributes(name)):
                return await fn(*args, **kwargs)

        return anode

    @functools.wraps(fn)
    def node(*args: Any, **kwargs: Any) -> Any:
        if not _ENABLED:
            return fn(*args, **kwargs)
        with span(f"step {name}", attributes=_step_attributes(name)):
            return fn(*args, **kwargs)

    return node


_COLLECTIONS = {"projects": "{project_id}", "tasks": "{task_id}", "users": "{user}"}
_ACTIONS = {"submit", "status", "login"}


def route_of(request: httpx.Request) -> str:
    """A request's route with its ids left out (``/api/v1/projects/{project_id}/tasks``): a span name that
    groups; ``/media/...`` paths are cut after their first segment."""
    parts = request.url.path.split("/")
    if "media" in parts:
        return "/".join(parts[: parts.index("media") + 1]) + "/{path}"
    out = []
    for i, part in enumerate(parts):
        above = parts[i - 1] if i else ""
        out.append(_COLLECTIONS[above] if above in _COLLECTIONS and part and part not in _ACTIONS else part)
    return "/".join(out)


class TracingTransport(httpx.AsyncBaseTransport):
    """An httpx transport making one CLIENT span per request (``<service> <METHOD> <route>``) and sending its
    W3C ``traceparent``; the request goes through untouched when tracing is off.

    Args:
        inner: the transport that sends (``httpx.AsyncHTTPTransport(verify=..., limits=...)``).
        service: the outside service's name (``task-service``, ``auto-movie``, ``llm``).
        route: the route of a request, ids left out (default `route_of`).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        service: str,
        route: Callable[[httpx.Request], str] | None = None,
    ) -> None:
        self._inner = inner
        self._service = service
        self._route = route or route_of

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request inside its CLIENT span."""
        if not _ENABLED:
            return await self._inner.handle_async_request(request)
        route = self._route(request)
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        attributes = {"http.request.method": request.method, "url.template": route, "peer.service": self._service,
                      "server.address": request.url.host, "server.port": port}  # fmt: skip
        with span(
            f"{self._service} {request.method} {route}", kind=SpanKind.CLIENT, attributes=attributes
        ) as s:
            propagate.inject(request.headers)
            response = await self._inner.handle_async_request(request)
            if s is not None:
                s.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    s.set_status(Status(StatusCode.ERROR))
                    s.set_attribute("error.type", str(response.status_code))
            return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
