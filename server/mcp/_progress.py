"""What a waiting ``get_status`` tells its caller meanwhile: progress a person can read, and the
workflow's notable events as log messages.

Progress (``notifications/progress``) goes out when the request carries a progress token: at the
start of the wait (where the workflow stands), on every change, and every `heartbeat` seconds of
silence, so clients whose tool timeout resets on progress never give up on a long wait.

Log messages (``notifications/message``) carry the events a person wants to hear of while waiting
(a step failed, a retry is scheduled, a breaker opened, a decision is needed, the workflow ended),
each at a matching level. Which levels go out: at 2026-07-28 the request's own log level
(``_meta`` ``io.modelcontextprotocol/logLevel``; none without it); in the handshake era the level the
session set with ``logging/setLevel`` (`set_level_handler`), else ``info``. Both ride the request's
own stream (on HTTP, the SSE answer `server.web._streaming` chooses for such requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any, Final, get_args

import mcp_types as types
import structlog
from mcp.server.connection import allowed_log_levels
from mcp.server.mcpserver import Context
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from adapters import Status, WorkflowRecord, WorkflowStore
from server.mcp._sdk import connection_state, progress_listener

__all__ = ["DEFAULT_LEVEL", "PLAIN_REPLY", "WaitFeed", "describe", "event_log", "set_level_handler"]

log = structlog.get_logger(__name__)

LEVELS: Final[tuple[types.LoggingLevel, ...]] = get_args(types.LoggingLevel)
DEFAULT_LEVEL: Final[types.LoggingLevel] = "info"
_LEVEL_STATE = "movie_orchestrator.log_level"
_HEARTBEAT_SECONDS = 10.0

# True while the transport answers the current request with one JSON body (set by the HTTP port's
# per-request choice, `server.web`): its notifications would be dropped, so a waiting call prepares none.
PLAIN_REPLY: contextvars.ContextVar[bool] = contextvars.ContextVar("mo_plain_reply", default=False)
_MAX_AGENTS_NAMED = 3


def describe(rec: WorkflowRecord) -> str:
    """One line a person can read: ``character_development: developing Ada (2 agents at work: ...)``."""
    if rec.status == Status.WAITING_DECISION:
        question = rec.pending[0].get("question", "") if rec.pending else ""
        more = f" (+{len(rec.pending) - 1} more)" if len(rec.pending) > 1 else ""
        return f"waiting for your decision: {question or 'a decision is open'}{more}"
    if rec.status == Status.QUEUED:
        return f"queued: {rec.message}" if rec.message and rec.message != "queued" else "queued for a worker"
    if rec.status in {Status.PAUSED, Status.CANCELLED}:
        return rec.status
    if rec.status == Status.COMPLETED:
        return "completed: every deliverable is ready"
    if rec.status == Status.FAILED:
        return f"failed at {rec.step or 'a step'}: {rec.last_error[:200]}; retry_step runs it again"
    head = rec.phase or rec.workflow
    text = rec.waiting_reason or rec.message or rec.step or "working"
    line = f"{head}: {text}"
    agents = rec.agents_running
    if agents:
        named = ", ".join(a.replace("_", " ") for a in agents[:_MAX_AGENTS_NAMED])
        if len(agents) > _MAX_AGENTS_NAMED:
            named += f" and {len(agents) - _MAX_AGENTS_NAMED} more"
        line += f" ({len(agents)} agent{'s' if len(agents) > 1 else ''} at work: {named})"
    return line


def event_log(what: str, data: dict[str, Any]) -> tuple[types.LoggingLevel, str] | None:
    """The level and words of a notable workflow event; None for the ordinary ones."""
    step = str(data.get("step", "") or "")
    agent = str(data.get("agent", "") or "")
    error = str(data.get("error", "") or data.get("detail", "") or "")[:300]
    if what == "step.failed":
        return "error", f"step {step} failed: {error}"
    said = (
        f"{data['service']} {data.get('operation', '')}: {data.get('reason', '')}"[:300]
        if data.get("service")
        else error
    )
    if what == "agent.transient":
        return "warning", f"{agent} hit a passing failure ({said}); retry scheduled"
    if what == "agent.failed":
        return "warning", f"{agent} failed ({said}); {data.get('next') or 'trying an alternative agent'}"
    if what == "job.reported_late":
        return (
            "notice",
            f"job {data.get('task_id', '')} of step {step} reported late: {data.get('status')} {data.get('reason', '')}",
        )
    if what == "agent.ok" and data.get("detail"):
        return "notice", f"{agent} stood in: {data['detail']}"
    if what == "service.waiting":
        return "warning", str(data.get("reason", "waiting for an outside service"))
    if what == "decision.requested":
        count = len(data.get("decisions", []) or [])
        return "notice", f"decision needed ({count} open); answer with submit_decision"
    if what == "decision.submitted":
        return "info", f"decision {data.get('decision_id', '')} answered: {data.get('choice', '')}"
    if what == "workflow.failed":
        return "error", f"workflow failed: {error}; retry_step runs the failed step again"
    if what == "integrity.failed":
        return "critical", f"integrity check failed: {error}"
    if what in {"workflow.completed", "workflow.cancelled", "workflow.paused", "workflow.resumed"}:
        return "info", f"workflow {what.split('.', 1)[1]}"
    if what == "workflow.retry":
        return "info", "retrying the failed step"
    return None


async def set_level_handler(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    """``logging/setLevel`` (handshake era): remember the level for this connection.

    On stateless HTTP every request is its own connection, so the level cannot outlive the call;
    such clients get the default level, or ask per request (2026-07-28).
    """
    state = connection_state(ctx.session)
    if state is not None:
        state[_LEVEL_STATE] = params.level
    log.debug("mcp.log_level_set", level=params.level)
    return types.EmptyResult()


def allowed_levels(ctx: Context) -> frozenset[str]:
    """The levels this request may receive."""
    rc = ctx.request_context
    if rc.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return frozenset(allowed_log_levels(rc.protocol_version, rc.meta))
    state = connection_state(ctx.request_context.session)
    level = state.get(_LEVEL_STATE, DEFAULT_LEVEL) if state is not None else DEFAULT_LEVEL
    return frozenset(LEVELS[LEVELS.index(level) :])


def wants_progress(ctx: Context) -> bool:
    """True when the caller listens for progress (a token on the wire, or an in-process callback)."""
    meta: Any = ctx.request_context.meta or {}
    if meta.get("progress_token", meta.get("progressToken")) is not None:
        return True
    # In-process calls carry a callback instead of a token; a context we do not recognise counts as
    # listening, since reporting to nobody is only a wasted read.
    listens = progress_listener(ctx.request_context.session)
    return True if listens is None else listens


class WaitFeed:
    """Progress and log notifications of one waiting ``get_status`` call.

    Args:
        ctx: the request's context.
        store: the workflow store.
        workflow_id: the workflow waited on.
        heartbeat: seconds of silence after which the current state is reported again.
    """

    def __init__(
        self,
        ctx: Context,
        store: WorkflowStore,
        workflow_id: str,
        *,
        heartbeat: float = _HEARTBEAT_SECONDS,
    ) -> None:
        self._ctx = ctx
        self._store = store
        self._wid = workflow_id
        self._heartbeat = heartbeat
        # Answered as one JSON body (stateless HTTP without a token or level): nothing sent would arrive.
        plain = PLAIN_REPLY.get()
        self._progress = not plain and wants_progress(ctx)
        self._levels = frozenset() if plain else allowed_levels(ctx)
        self._last_event = "0"
        self._percent = 0.0
        self._last_line = ""
        self._lock = asyncio.Lock()
        self._quiet = asyncio.Event()
        self._stopped = False
        self.sent = {"progress": 0, "log": 0}

    @property
    def active(self) -> bool:
        """False when the caller asked for neither progress nor logs (nothing to read or send)."""
        return self._progress or bool(self._levels)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WaitFeed]:
        """Report where the workflow stands now, then keep the caller company until the block exits."""
        if not self.active:
            yield self
            return
        self._last_event = await self._store.last_event_id(self._wid) or "0"
        await self._report(None)
        beat = asyncio.create_task(self._beat())
        try:
            yield self
        finally:
            # Stop between reports rather than cancel one mid-command on the shared Redis client.
            self._stopped = True
            self._quiet.set()
            with contextlib.suppress(Exception):
                await beat

    async def on_change(self, percent: float, what: str) -> None:
        """A change notice seen by the wait: report it (hand this to `wait_status`)."""
        self._percent = max(self._percent, percent)
        if self.active:
            await self._report(what)

    async def _beat(self) -> None:
        while not self._stopped:
            self._quiet.clear()
            try:
                await asyncio.wait_for(self._quiet.wait(), self._heartbeat)
            except TimeoutError:
                if not self._stopped:
                    await self._report(None, again=True)

    async def _report(self, what: str | None, *, again: bool = False) -> None:
        async with self._lock:
            try:
                rec = await self._store.get(self._wid)
                if self._levels:
                    await self._send_events()
                if rec is not None and self._progress:
                    self._percent = max(self._percent, rec.percent)
                    line = describe(rec)
                    if again or line != self._last_line or what is not None:
                        await self._ctx.report_progress(self._percent, 100, line)
                        self._last_line = line
                        self.sent["progress"] += 1
            except Exception:  # a lost notification must never fail the wait itself
                log.warning("mcp.wait_feed_failed", workflow_id=self._wid, exc_info=True)
            self._quiet.set()

    async def _send_events(self) -> None:
        rc = self._ctx.request_context
        for event in await self._store.events(self._wid, after=self._last_event, count=200):
            self._last_event = event["id"]
            said = event_log(event["what"], event["data"])
            if said is None or said[0] not in self._levels:
                continue
            level, text = said
            note = types.LoggingMessageNotification(
                params=types.LoggingMessageNotificationParams(
                    level=level, logger=f"workflow/{self._wid}", data=text
                )
            )
            await rc.session.send_notification(note, related_request_id=rc.request_id)
            self.sent["log"] += 1
