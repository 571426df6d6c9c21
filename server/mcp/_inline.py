"""Decisions asked inline: a waiting ``get_status`` that meets a pending decision asks the person at the
client, when the client declared form elicitation, and records the answer in the decision ledger
(`OrchestratorService.submit_decision`: idempotent, a conflicting answer refused, who decided audited).

- 2026-07-28: the call answers with an input-required result, one form per open decision keyed by the
  decision id, and a request state naming the workflow and those decisions. The SDK seals that state
  (`request_state_security`) with keys every instance derives from the deployment's integrity keys,
  bound to the caller's key name, so the retry may land on any instance and cannot be forged or replayed
  by another key. The retry's answers go to the ledger and the call returns the status at once.
- Handshake era with a back channel (stdio, WebSocket, in-process): ``elicitation/create`` per decision,
  within the call.
- Everyone else (no elicitation, or stateless HTTP in the handshake era, which has no back channel)
  keeps seeing ``pending_decisions`` and answers with ``submit_decision``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types as types
import structlog
from mcp.server.mcpserver import Context
from mcp.server.request_state import RequestStateSecurity
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from adapters import ConflictError, NotFoundError, OrchestratorError, Status
from server.core import Caller, Decision, OrchestratorService, WorkflowStatus, current_caller
from server.mcp._task_view import decision_form

__all__ = [
    "ElicitationAnswers",
    "InlineDecisions",
    "answer_request_id",
    "declares_form",
    "form",
    "request_state_security",
]

log = structlog.get_logger(__name__)

_STATE_LABEL = b"movie-orchestrator/mcp-request-state/v1"
_ANSWER_PREFIX = "mo-decision/"


def request_state_security(
    integrity_keys: Sequence[bytes], principal: Callable[[], str]
) -> RequestStateSecurity:
    """The sealing policy every instance shares: keys derived from the integrity keys (newest first seals,
    all unseal, so rotating them rotates these), the caller's key name as principal."""
    keys = [hmac.new(k, _STATE_LABEL, hashlib.sha256).digest() for k in integrity_keys]

    def bind(ctx: Any) -> str:
        del ctx
        return principal()

    return RequestStateSecurity(keys=keys, bind_principal=bind, ttl=3600.0)


def form(status: WorkflowStatus, d: Decision) -> types.ElicitRequestFormParams:
    """A pending decision as a form: the one a Tasks client gets, with a message naming the production."""
    schema = decision_form(d)["params"]["requestedSchema"]
    message = f"{status.workflow.replace('_', ' ')} of {status.project_id} ({status.workflow_id}) asks: {d.question}"
    return types.ElicitRequestFormParams(message=message, requested_schema=schema)


def declares_form(ctx: Context) -> bool:
    """True when the client declared form elicitation."""
    caps = ctx.request_context.session.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None:
        return False
    # An empty elicitation capability means form mode (the handshake-era default).
    return elicitation.form is not None or elicitation.url is None


class InlineDecisions:
    """Ask pending decisions inside a waiting ``get_status`` and record the answers.

    Args:
        service: the ledger's owner.
    """

    def __init__(self, service: OrchestratorService) -> None:
        self._service = service

    async def answers(self, ctx: Context, caller: Caller, workflow_id: str) -> bool:
        """Record the answers of a retried call (2026-07-28); True when this call was such a retry."""
        responses, state = ctx.input_responses, ctx.request_state
        if state is None:
            return False
        try:
            asked = json.loads(state)
            wid, ids = asked["wid"], set(asked["decisions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MCPError(
                code=types.INVALID_PARAMS, message="requestState is not one this server minted"
            ) from exc
        if wid != workflow_id:
            raise MCPError(code=types.INVALID_PARAMS, message="requestState belongs to another workflow")
        for decision_id, response in (responses or {}).items():
            if decision_id in ids and isinstance(response, types.ElicitResult):
                await self.record(caller, workflow_id, decision_id, response)
        return True

    @staticmethod
    def can_ask(ctx: Context, caller: Caller) -> bool:
        """True when this call may ask decisions inline: form elicitation declared, a key that may decide,
        and a way to ask (2026-07-28, or a handshake-era back channel)."""
        if not caller.can("decide") or not declares_form(ctx):
            return False
        return (
            ctx.protocol_version in MODERN_PROTOCOL_VERSIONS or ctx.request_context.session.can_send_request
        )

    async def ask(
        self, ctx: Context, caller: Caller, status: WorkflowStatus
    ) -> WorkflowStatus | types.InputRequiredResult:
        """The status, or the questions when the client can answer them here and now."""
        if (
            status.status != Status.WAITING_DECISION
            or not status.pending_decisions
            or not self.can_ask(ctx, caller)
        ):
            return status
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            requests = {d.id: types.ElicitRequest(params=form(status, d)) for d in status.pending_decisions}
            state = json.dumps({"wid": status.workflow_id, "decisions": sorted(requests)})
            return types.InputRequiredResult(input_requests=dict(requests), request_state=state)
        session = ctx.request_context.session
        for d in status.pending_decisions:
            asked = form(status, d)
            try:
                result = await session.elicit_form(
                    asked.message, asked.requested_schema, ctx.request_context.request_id
                )
            except (NoBackChannelError, MCPError) as exc:
                # No way to ask after all, or the client refused the form: it still sees pending_decisions.
                log.info("mcp.inline_decision_not_asked", workflow_id=status.workflow_id, error=str(exc))
                return status
            await self.record(caller, status.workflow_id, d.id, result)
        return await self._service.get_status(caller, status.workflow_id)

    async def record(
        self, caller: Caller, workflow_id: str, decision_id: str, result: types.ElicitResult
    ) -> None:
        """Record an answer to a decision asked inline (declined or cancelled: nothing is recorded)."""
        if result.action != "accept" or not result.content:
            log.info("mcp.inline_decision_not_answered", workflow_id=workflow_id, decision_id=decision_id,
                     action=result.action)  # fmt: skip
            return
        content = result.content
        try:
            await self._service.submit_decision(
                caller,
                workflow_id=workflow_id,
                decision_id=decision_id,
                choice=str(content.get("choice", "")),
                comment=str(content.get("comment", "") or ""),
            )
        except (ConflictError, NotFoundError) as exc:
            # Answered meanwhile through another channel, or no longer open: the ledger already says
            # what stands, and the status returned shows it.
            log.info("mcp.inline_decision_refused", workflow_id=workflow_id, decision_id=decision_id,
                     error=str(exc))  # fmt: skip


def answer_request_id(workflow_id: str, decision_id: str) -> str:
    """The JSON-RPC id of an ``elicitation/create`` sent where no answer can come back into the request
    (stateless HTTP): it names what it asks, so its answer is recorded wherever it lands."""
    return f"{_ANSWER_PREFIX}{workflow_id}/{decision_id}/{secrets.token_hex(4)}"


class ElicitationAnswers:
    """Answers POSTed to questions asked with `answer_request_id` ids, recorded in the decision ledger.

    A client answers a server's request with a JSON-RPC response POSTed to ``/mcp``, which on stateless
    HTTP any instance may receive and no request of ours awaits. Recorded as the caller who POSTed it
    (its key's projects and role apply, as for ``submit_decision``).

    Args:
        service: the ledger's owner.
        fallback: the caller when the transport authenticated nobody.
    """

    def __init__(self, service: OrchestratorService, fallback: Caller) -> None:
        self._inline = InlineDecisions(service)
        self._fallback = fallback

    @staticmethod
    def ours(message: Any) -> bool:
        """True when `message` is a JSON-RPC response to a question asked with `answer_request_id`."""
        return (
            isinstance(message, dict)
            and "method" not in message
            and ("result" in message or "error" in message)
            and str(message.get("id", "")).startswith(_ANSWER_PREFIX)
        )

    async def take(self, message: dict[str, Any]) -> None:
        """Record the answer `message` carries (an error, a decline or a malformed answer: nothing)."""
        wid, _, rest = str(message["id"]).removeprefix(_ANSWER_PREFIX).partition("/")
        decision_id = rest.partition("/")[0]
        try:
            result = types.ElicitResult.model_validate(message.get("result"))
        except ValidationError:
            log.info("mcp.inline_answer_unreadable", workflow_id=wid, decision_id=decision_id,
                     error=str(message.get("error", ""))[:200])  # fmt: skip
            return
        caller = current_caller.get() or self._fallback
        try:
            await self._inline.record(caller, wid, decision_id, result)
        except OrchestratorError as exc:
            # Not the caller's workflow, no right to decide, or gone: nothing recorded, said in the log.
            log.info("mcp.inline_answer_refused", workflow_id=wid, decision_id=decision_id, error=str(exc))
