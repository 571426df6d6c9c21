"""Health of one instance on the HTTP port: ``/healthz`` (alive), ``/readyz`` (Redis, breakers, engine),
``/metrics`` (Prometheus). Unauthenticated: expose them only internally."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters import KeyStore, OrchestratorError, SharedBreakers, WorkflowStore
from server.telemetry import Metrics

__all__ = ["Health"]

log = structlog.get_logger(__name__)

_BREAKER_GAUGE = {"open": 1.0, "half-open": 0.5}


class Health:
    """The health routes.

    Args:
        store: Redis (a ping) and the run queue's depth.
        breakers: the outside services' circuit states.
        metrics: the process's registry.
        keys: the API keys (those about to expire are listed in /readyz).
        engine: what this instance's engine says of itself (None, or answering None: it runs no engine).
        engines: what the engine processes say of themselves (None: there are none).
        resident_bytes: this process's resident memory, for the metrics (None: not measured here).
    """

    def __init__(
        self,
        store: WorkflowStore,
        breakers: SharedBreakers,
        metrics: Metrics,
        keys: KeyStore,
        *,
        engine: Callable[[], dict[str, Any] | None] | None = None,
        engines: Callable[[], list[dict[str, object]]] | None = None,
        resident_bytes: Callable[[], int | None] | None = None,
    ) -> None:
        self._store = store
        self._breakers = breakers
        self._metrics = metrics
        self._keys = keys
        self._engine = engine
        self._engines = engines
        self._resident = resident_bytes

    def routes(self) -> list[Route]:
        """``/healthz``, ``/readyz``, ``/metrics``."""
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
        ]

    async def healthz(self, _: Request) -> Response:
        """Alive."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, _: Request) -> Response:
        """Ready to serve MCP when Redis answers; says why the engine takes on no new runs, if it does not."""
        try:
            redis_ok = await self._store.ping()
        except OrchestratorError:
            redis_ok = False
        body: dict[str, Any] = {
            "ready": redis_ok,
            "redis": "ok" if redis_ok else "unreachable",
            "breakers": self._breakers.states(),
        }
        engine = self._engine() if self._engine is not None else None
        if engine is not None:
            # Ready to serve MCP either way; an engine above its memory mark takes on no new runs.
            body["engine"] = engine
        if self._engines is not None:
            body["engines"] = self._engines()
        if redis_ok:
            body["keys_expiring"] = [
                {"key_id": k.key_id, "name": k.name, "expires_at": k.expires_at}
                for k in await self._keys.expiring()
            ]
        return JSONResponse(body, status_code=200 if redis_ok else 503)

    async def metrics(self, _: Request) -> Response:
        """Prometheus exposition of this process's registry (gauges brought up to date first)."""
        for name, state in self._breakers.states().items():
            self._metrics.breaker_state.labels(name).set(_BREAKER_GAUGE.get(state, 0.0))
        resident = self._resident() if self._resident is not None else None
        if resident is not None:
            self._metrics.rss_bytes.set(resident)
        try:
            self._metrics.queue_depth.set(await self._store.queue_depth())
        except OrchestratorError:
            log.warning("metrics.queue_depth_unavailable")
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)
