"""Telemetry of one process: structured logs (structlog), Prometheus metrics and traces (OpenTelemetry).

Owns: log configuration and redaction, the metric registry, the tracing SDK's installation (the only place
that imports the SDK; spans are made through `adapters.tracing`). Imports nothing of `server`: every other
part may use it.
"""

from server.telemetry._logging import add_graph_node, configure_logging, redact
from server.telemetry._metrics import Metrics
from server.telemetry._tracing import configure_tracing, export_wanted, shutdown_tracing

__all__ = [
    "Metrics",
    "add_graph_node",
    "configure_logging",
    "configure_tracing",
    "export_wanted",
    "redact",
    "shutdown_tracing",
]
