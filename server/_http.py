"""The HTTP port: MCP (Streamable HTTP at /mcp, WebSocket at /ws), Task Service webhooks, health, metrics."""

from __future__ import annotations

import datetime as dt
import hmac
import time
from typing import TYPE_CHECKING, Any, cast

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from adapters import IntegrityError
from server._auth import ApiKeyMiddleware, KeyStore
from server._board import BOARD_API, board_routes
from server._caller import current_caller
from server._ports_impl import webhook_token
from server._service import Caller
from server._streaming import streamable_http_app
from server._ws import serve_mcp_websocket

if TYPE_CHECKING:
    from server._runtime import Orchestrator

__all__ = ["build_http_app", "webhook_result"]

log = structlog.get_logger(__name__)


def webhook_result(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a Task Service webhook a waiting step needs."""
    result = payload.get("result") or {}
    out: dict[str, Any] = {
        "status": payload.get("status"),
        "result_url": result.get("media_url") or result.get("url"),
        "error": payload.get("error", ""),
    }
    if "score" in result:
        out["score"] = result["score"]
    return out


def _lag(payload: dict[str, Any]) -> float | None:
    stamp = payload.get("completed_at") or payload.get("failed_at")
    try:
        return max(0.0, time.time() - dt.datetime.fromisoformat(str(stamp)).timestamp())
    except (TypeError, ValueError):
        return None


def _webhook_problem(payload: Any) -> str:
    """What is wrong with a webhook body, naming the field ("" when nothing is)."""
    if not isinstance(payload, dict):
        return "body must be a JSON object with task_id"
    task_id = payload.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
        return f"task_id must be a non-empty string, got {type(task_id).__name__}"
    if not isinstance(payload.get("result") or {}, dict):
        return f"result must be an object, got {type(payload['result']).__name__}"
    return ""


def build_http_app(orch: Orchestrator, *, keys: KeyStore | None) -> ASGIApp:  # noqa: PLR0915 - routes read best together
    """The ASGI app of the HTTP port (stateless Streamable HTTP: any instance answers any request).

    Args:
        orch: the process.
        keys: API keys to require on /mcp and /ws; None serves them without auth (loopback only).
    """
    mcp = orch.mcp
    app = streamable_http_app(mcp, host="127.0.0.1")

    async def webhook(request: Request) -> Response:
        q = request.query_params
        wid, step, nonce, token = q.get("wid", ""), q.get("step", ""), q.get("n", ""), q.get("token", "")
        source = request.client.host if request.client else "?"

        async def refuse(outcome: str, status: int, message: str, **data: Any) -> Response:
            orch.metrics.webhooks.labels(outcome).inc()
            log.warning("webhook.refused", source=source, workflow_id=wid, step=step, outcome=outcome, **data)
            if orch.keys is not None:
                await orch.keys.audit("webhook.refused", source=source, workflow_id=wid, step=step,
                                      outcome=outcome, **data)  # fmt: skip
            return JSONResponse({"error": message}, status_code=status)

        expected = webhook_token(orch.webhook_secret, wid, step, nonce)
        if not wid or not hmac.compare_digest(token.encode(), expected.encode()):
            orch.metrics.webhooks.labels("refused").inc()
            log.warning("webhook.refused", source=source, workflow_id=wid)
            return JSONResponse({"error": "invalid webhook token"}, status_code=401)
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        problem = _webhook_problem(payload)
        if problem:
            orch.metrics.webhooks.labels("malformed").inc()
            return JSONResponse({"error": problem}, status_code=400)
        task_id = str(payload["task_id"])
        key = f"{wid}:{step}"
        try:
            entry = await orch.store.job_entry(wid, key)
        except IntegrityError as exc:
            return await refuse("refused_integrity", 409, f"integrity_error: {exc}")
        if entry is None or entry[0] != nonce:
            # A token of a submission that is no longer (or never was) this step's job.
            return await refuse("refused_unknown_job", 404, f"workflow {wid!r} has no job awaiting a webhook "
                                "for this step and token", task_id=task_id)  # fmt: skip
        if entry[1] and entry[1] != task_id:
            return await refuse("refused_other_job", 409, f"this token is for step {step!r} of workflow {wid!r}, "
                                f"whose job is not {task_id!r}", task_id=task_id)  # fmt: skip
        stored = await orch.store.put_job_result(wid, key, task_id, webhook_result(payload))
        lag = _lag(payload)
        if lag is not None:
            orch.metrics.webhook_lag.observe(lag)
        orch.metrics.webhooks.labels("accepted" if stored else "duplicate").inc()
        log.info("webhook.received", workflow_id=wid, step=step, task_id=task_id, duplicate=not stored)
        return JSONResponse({"ok": True, "duplicate": not stored})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        try:
            await orch.redis.ping()
            redis_ok = True
        except Exception:
            redis_ok = False
        breakers = orch.board.states()
        body: dict[str, Any] = {
            "ready": redis_ok,
            "redis": "ok" if redis_ok else "unreachable",
            "breakers": breakers,
        }
        if orch.engine is not None:
            # Ready to serve MCP either way; an engine above its memory mark takes on no new runs.
            engine = orch.engine
            mark = engine.memory
            body["engine"] = {
                "claiming": not engine.not_claiming,
                "reason": engine.not_claiming,
                "runs": len(engine.running),
                **({"resident_mb": round(mark.rss / 2**20, 1), "high_water_mb": round(mark.mark_bytes / 2**20, 1)}
                   if mark is not None else {}),
            }  # fmt: skip
        if orch.engine_processes is not None:
            children, mark_bytes = orch.engine_processes
            body["engines"] = children.memory(mark_bytes)
        if redis_ok and orch.keys is not None:
            body["keys_expiring"] = [
                {"key_id": k.key_id, "name": k.name, "expires_at": k.expires_at}
                for k in await orch.keys.expiring()
            ]
        return JSONResponse(body, status_code=200 if redis_ok else 503)

    async def metrics(_: Request) -> Response:
        orch.refresh_gauges_soon()
        if orch.engine is not None and orch.engine.memory is not None:
            orch.metrics.rss_bytes.set(orch.engine.memory.rss)
        try:
            orch.metrics.queue_depth.set(await orch.store.queue_depth())
        except Exception:
            log.warning("metrics.queue_depth_unavailable")
        return Response(generate_latest(orch.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def ws(websocket: WebSocket) -> None:
        caller: Caller | None = None
        if keys is not None:
            header = websocket.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            source = websocket.client.host if websocket.client else ""
            caller, _ = await keys.verify(token, source=source)
            if caller is None:
                await websocket.close(code=1008, reason="unauthorized")
                return
        reset = current_caller.set(caller) if caller is not None else None
        try:
            await serve_mcp_websocket(websocket, mcp)
        finally:
            if reset is not None:
                current_caller.reset(reset)

    app.router.routes.extend(
        [
            Route("/webhooks/tasks", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/ws", ws),
            *board_routes(orch),
        ]
    )
    served: ASGIApp = app if keys is None else ApiKeyMiddleware(app, keys, protected=("/mcp", BOARD_API))
    # A caller's address (throttle, audit, logs) is its socket's peer, unless that peer is a configured
    # proxy: only then is X-Forwarded-For read (its rightmost untrusted entry).
    proxies = orch.settings.trusted_proxy_list
    if not proxies:
        return served
    trusted: Any = ProxyHeadersMiddleware(cast("Any", served), trusted_hosts=proxies)  # uvicorn's ASGI types
    return cast("ASGIApp", trusted)
