"""Running one agent: its operation on the right port, alternatives on recoverable failure, memo."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import structlog

from adapters import tracing
from adapters.errors import OutsideError, RecoverableError, TransientError
from graphs._ports import Ports
from graphs._registry import Agent, registry
from graphs._transforms import TRANSFORMS

__all__ = ["AgentOutcome", "run_agent"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AgentOutcome:
    """What an agent produced and which agent (the asked one or an alternative) produced it."""

    agent_id: str
    output: dict[str, Any]
    fallback_from: str = ""


@dataclass(frozen=True)
class _LocalCtx:
    workflow_id: str
    ports: Ports

    async def write_file(self, name: str, content: str | bytes) -> str:
        return await self.ports.files.write_file(name, content)


def _task_data(task_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the Task Service reads for each type (docs/contracts/task-service.md): lengths are ``duration``
    in seconds, an evaluation's ``gather_data`` a list of ``{content, summary, context}`` objects."""
    prompt = str(inputs.get("prompt") or inputs.get("summary") or inputs.get("title") or "")
    if task_type == "generate_image":
        return {"prompt": prompt, "image_params": {"width": 768, "height": 432}}
    if task_type == "process_audio":
        return {"prompt": prompt, "audio_params": {"duration": 2}}
    if task_type == "generate_video":
        return {"scene_data": inputs.get("scene", {}), "video_params": {"duration": 6, "fps": 24}}
    return {
        "department_slug": str(inputs.get("department", "story")),
        "department_number": int(inputs.get("department_number", 1)),
        "gather_data": list(inputs.get("gather_data") or []),
        "previous_evaluations": inputs.get("previous_evaluations", []),
        "threshold": int(inputs.get("threshold", 70)),
    }


async def _execute(ports: Ports, agent: Agent, inputs: dict[str, Any], key: str) -> dict[str, Any]:
    op = agent.operation
    out_key = agent.outputs[0]
    if op.kind == "local":
        result = TRANSFORMS[op.name](inputs, _LocalCtx(ports.workflow_id, ports))
        if inspect.isawaitable(result):
            result = await result
        return dict(result)
    if op.kind == "writer":
        return await ports.writer.write(op.name, inputs)
    if op.kind == "task":
        # submitted to done (its webhook is this span's child, through the job's metadata)
        with tracing.span(
            f"job {op.name}", attributes={"mo.job.step_key": key, "mo.task_type": op.name}
        ) as job:
            res = await ports.tasks.run_task(key, op.name, _task_data(op.name, inputs))
            if job is not None:
                job.set_attribute("mo.task_id", str(res.get("task_id", "")))
        return {out_key: res}
    if op.kind == "brain":
        pid = ports.project_id
        if op.name == "create_character":
            c = inputs["character"]
            args = {"project_id": pid, "name": c["name"], "personality_description": c.get("personality", ""),
                    "appearance_description": c.get("appearance", "")}  # fmt: skip
        elif op.name == "find_similar_characters":
            c = inputs["character"]
            args = {"project_id": pid, "query": f"{c.get('personality', '')} {c.get('appearance', '')}"}
        else:
            args = {"project_id": pid, "content": str(inputs.get("content", ""))[:4000], "type": "story"}
        return {out_key: await ports.brain.call(op.name, args)}
    if op.name == "get_project":
        return {out_key: await ports.auto_movie.get_project(ports.project_id)}
    if op.name == "complete_project":
        await ports.auto_movie.set_status(ports.project_id, "completed")
        return {out_key: {"status": "completed"}}
    await ports.auto_movie.write_progress(
        ports.project_id,
        str(inputs["phase"]),
        list(inputs.get("completed", [])),
        float(inputs.get("percent", 0)),
    )
    return {out_key: {"phase": inputs["phase"]}}


async def run_agent(ports: Ports, agent_id: str, inputs: dict[str, Any], *, step: str) -> AgentOutcome:
    """Run `agent_id` (or, when it fails recoverably or its service is down, an alternative).

    A result already produced for this step (before a crash or a failed sibling) is returned from
    the memo instead of running the agent again.

    Raises:
        RecoverableError: the agent and every alternative failed.
        TransientError: the service kept failing transiently (the node's retry policy decides).
        BudgetExceededError: the workflow has used up its agent executions.
    """
    with structlog.contextvars.bound_contextvars(step=step):
        return await _run_chain(ports, agent_id, inputs, step)


def _failure(agent: Agent, step: str, exc: OutsideError, then: str) -> dict[str, str]:
    """What an event and a producer need of one agent's failure: who, which service and operation, where,
    the service's own words, and what happens next."""
    return {"detail": str(exc)[:300], "service": exc.service or agent.operation.service or "local",
            "operation": exc.operation or agent.operation.name, "step": step,
            "reason": (exc.reason or str(exc))[:500], "next": then}  # fmt: skip


async def _run_chain(ports: Ports, agent_id: str, inputs: dict[str, Any], step: str) -> AgentOutcome:
    failures: list[dict[str, str]] = []
    chain = registry().chain(agent_id, ports.unavailable)
    for i, agent in enumerate(chain):
        key = f"{step}:{agent.id}"
        cached = await ports.memo.get(key)
        if cached is not None:
            tracing.event(
                "agent.memo", mo_agent=agent.id
            )  # done before a crash or a failed sibling: not run again
            return AgentOutcome(agent.id, dict(cached), "" if agent.id == agent_id else agent_id)
        await ports.budget.charge("agent_executions", where=step)
        attributes = {"mo.agent": agent.id, "mo.agent.operation": f"{agent.operation.kind}:{agent.operation.name}",
                      "mo.agent.step": step, **({"mo.agent.alternative_to": agent_id} if agent.id != agent_id else {})}  # fmt: skip
        try:
            with tracing.span(f"agent {agent.id}", attributes=attributes):
                output = await _execute(ports, agent, inputs, key)
        except RecoverableError as exc:
            then = (
                f"trying alternative {chain[i + 1].id}"
                if i + 1 < len(chain)
                else "no alternative left: the step fails"
            )
            info = _failure(agent, step, exc, then)
            failures.append({"agent": agent.id, **info})
            ports.on_agent(agent.id, "failed", info)
            log.warning(
                "agent.failed_trying_alternative", agent=agent.id, step=step, error=str(exc)[:300], next=then
            )
            continue
        except TransientError as exc:
            then = (
                "the step is retried by its retry policy; when retries run out the workflow stops as failed"
            )
            ports.on_agent(agent.id, "transient", _failure(agent, step, exc, then))
            raise
        await ports.memo.put(key, output)
        ports.on_agent(
            agent.id, "ok", {"detail": "" if agent.id == agent_id else f"alternative to {agent_id}"}
        )
        return AgentOutcome(agent.id, output, "" if agent.id == agent_id else agent_id)
    said = "; ".join(f"{f['agent']} ({f['service']} {f['operation']}): {f['reason']}" for f in failures)
    msg = (f"step {step!r}: agent {agent_id!r} and its alternatives failed: {said}; no alternative left: "
           "the workflow stops as failed (retry_step runs this step again)")  # fmt: skip
    first = failures[0] if failures else {}
    raise RecoverableError(msg).about(service=first.get("service", ""), operation=first.get("operation", ""),
                                      step=step, reason=first.get("reason", ""))  # fmt: skip
