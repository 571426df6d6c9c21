"""Telemetry of one process: structured logs (structlog) and Prometheus metrics.

Owns: log configuration and redaction, the metric registry. Imports nothing of `server`: every other
part may use it.
"""

from server.telemetry._logging import add_graph_node, configure_logging, redact
from server.telemetry._metrics import Metrics

__all__ = ["Metrics", "add_graph_node", "configure_logging", "redact"]
