"""Turning traces on: an OpenTelemetry SDK provider exporting OTLP/HTTP, only when the standard variables ask.

Export is wanted when ``OTEL_SDK_DISABLED`` is not true, ``OTEL_TRACES_EXPORTER`` is not ``none``, and either
it names ``otlp`` or ``console`` or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). Then the SDK is imported and installed with a batch processor; the
exporter reads the rest of the ``OTEL_EXPORTER_OTLP_*`` variables itself (headers, timeout, compression,
certificate) and the provider the sampler's (``OTEL_TRACES_SAMPLER[_ARG]``). Otherwise nothing is imported
or installed and `adapters.tracing` stays off: no span is made.
"""

from __future__ import annotations

from typing import Any

import structlog
from opentelemetry import trace

from adapters import tracing

__all__ = ["configure_tracing", "export_wanted", "shutdown_tracing"]

log = structlog.get_logger(__name__)

_provider: Any = None


def export_wanted(*, sdk_disabled: bool, exporter: str, endpoint: str) -> bool:
    """Whether the OTEL_* settings ask for spans to be exported."""
    if sdk_disabled:
        return False
    names = [e.strip().lower() for e in exporter.split(",") if e.strip()]
    if names == ["none"]:
        return False
    return any(n in {"otlp", "console"} for n in names) or bool(endpoint)


def configure_tracing(
    *, service_name: str, instance: str, sdk_disabled: bool, exporter: str, endpoint: str, protocol: str = ""
) -> bool:
    """Install the SDK and turn our spans on when export is wanted (once per process); True when it was.

    Args:
        service_name: ``service.name`` of the spans (``OTEL_SERVICE_NAME``, else movie-orchestrator).
        instance: ``service.instance.id`` (this instance's name in leases and events).
        sdk_disabled: ``OTEL_SDK_DISABLED``.
        exporter: ``OTEL_TRACES_EXPORTER`` (``otlp`` by default when an endpoint is set).
        endpoint: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        protocol: ``OTEL_EXPORTER_OTLP_PROTOCOL``; only ``http/protobuf`` is installed (``grpc`` is warned about).
    """
    global _provider  # noqa: PLW0603 - one provider per process, like the SDK's own global
    if _provider is not None or not export_wanted(
        sdk_disabled=sdk_disabled, exporter=exporter, endpoint=endpoint
    ):
        return _provider is not None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                        "service.instance.id": instance}))  # fmt: skip
    names = [e.strip().lower() for e in (exporter or "otlp").split(",") if e.strip()]
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            if protocol and protocol != "http/protobuf":
                log.warning("tracing.protocol_not_installed", asked=protocol, used="http/protobuf")
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            log.warning("tracing.exporter_unknown", exporter=name, known=["otlp", "console", "none"])
    trace.set_tracer_provider(provider)
    _provider = provider
    tracing.set_enabled(True)
    log.info("tracing.configured", exporters=names, endpoint=endpoint)
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop (at exit; nothing when tracing is off)."""
    global _provider  # noqa: PLW0603 - see configure_tracing
    if _provider is not None:
        tracing.set_enabled(False)
        _provider.shutdown()
        _provider = None
