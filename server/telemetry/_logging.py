"""structlog set-up: JSON lines in production, readable lines in a terminal; always on stderr.

stdout belongs to the MCP stdio transport, so nothing here ever writes to it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from adapters import tracing

__all__ = ["add_graph_node", "add_trace_ids", "configure_logging", "redact"]

_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization", "x-api-key")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it is a secret."""
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "**********"
    return event


def add_graph_node(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Name the graph node a line was logged from (LangGraph keeps it in the run's config)."""
    if "node" not in event:
        try:
            from langgraph.config import get_config

            node = get_config().get("metadata", {}).get("langgraph_node")
        except RuntimeError:  # not inside a graph run
            node = None
        if node:
            event["node"] = node
    return event


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Name the trace and span a line was logged in, so lines and spans join (only while tracing is on)."""
    if tracing.enabled():
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event.setdefault("trace_id", format(ctx.trace_id, "032x"))
            event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def configure_logging(
    fmt: str = "auto", level: str = "info", log_file: str = "", *, cache: bool = True
) -> None:
    """Configure structlog (and stdlib logging) once per process; to `log_file` when given.

    `cache` keeps each logger's configuration from its first use (faster); a test that configures logging
    for itself and resets it afterwards turns it off, or loggers first used meanwhile keep its file.
    """
    stream: Any = open(log_file, "a", buffering=1) if log_file else sys.stderr  # noqa: SIM115 - lives as long as the process
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_graph_node,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=cache,
    )
    logging.basicConfig(stream=stream, level=max(lvl, logging.WARNING), force=True)
