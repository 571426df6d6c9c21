"""Health of one instance on the HTTP port: ``/healthz`` (alive), ``/readyz`` (Redis, breakers, engine),
``/metrics`` (Prometheus). Unauthenticated: expose them only internally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters import KeyStore, OrchestratorError, QuotaStore, SharedBreakers, WorkflowStore
from server.telemetry import Metrics

__all__ = ["Health"]

log = structlog.get_logger(__name__)

_BREAKER_GAUGE = {"open": 1.0, "half-open": 0.5}


@dataclass(frozen=True)
class Health:
    """The health routes.

    Attributes:
        store: Redis (a ping) and the run queue's depth.
        breakers: the outside services' circuit states.
        metrics: the process's registry.
        keys: the API keys (those about to expire are listed in /readyz).
        engine: what this instance's engine says of itself (None, or answering None: it runs no engine).
        engines: what the engine processes say of themselves (None: there are none).
        resident_bytes: this process's resident memory, for the metrics (None: not measured here).
        quotas: the projects and keys with the most in flight, for the metrics (None: no quotas).
    """

    store: WorkflowStore
    breakers: SharedBreakers
    metrics: Metrics
    keys: KeyStore
    engine: Callable[[], dict[str, Any] | None] | None = None
    engines: Callable[[], list[dict[str, object]]] | None = None
    resident_bytes: Callable[[], int | None] | None = None
    quotas: QuotaStore | None = None

    def routes(self) -> list[Route]:
        """``/healthz``, ``/readyz``, ``/metrics``."""
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.exposition),
        ]

    async def healthz(self, _: Request) -> Response:
        """Alive."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, _: Request) -> Response:
        """Ready to serve MCP when Redis answers; says why the engine takes on no new runs, if it does not."""
        try:
            redis_ok = await self.store.ping()
        except OrchestratorError:
            redis_ok = False
        body: dict[str, Any] = {
            "ready": redis_ok,
            "redis": "ok" if redis_ok else "unreachable",
            "breakers": self.breakers.states(),
        }
        engine = self.engine() if self.engine is not None else None
        if engine is not None:
            # Ready to serve MCP either way; an engine above its memory mark takes on no new runs.
            body["engine"] = engine
        if self.engines is not None:
            body["engines"] = self.engines()
        if redis_ok:
            body["keys_expiring"] = [
                {"key_id": k.key_id, "name": k.name, "expires_at": k.expires_at}
                for k in await self.keys.expiring()
            ]
        return JSONResponse(body, status_code=200 if redis_ok else 503)

    async def exposition(self, _: Request) -> Response:
        """Prometheus exposition of this process's registry (gauges brought up to date first)."""
        for name, state in self.breakers.states().items():
            self.metrics.breaker_state.labels(name).set(_BREAKER_GAUGE.get(state, 0.0))
        resident = self.resident_bytes() if self.resident_bytes is not None else None
        if resident is not None:
            self.metrics.rss_bytes.set(resident)
        try:
            self.metrics.queue_depth.set(await self.store.queue_depth())
            if self.quotas is not None:
                self.metrics.tenant_in_flight.clear()
                for scope, tenant, count in await self.quotas.top(40):
                    self.metrics.tenant_in_flight.labels(scope, tenant).set(count)
        except OrchestratorError:
            log.warning("metrics.queue_depth_unavailable")
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
