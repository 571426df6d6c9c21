"""Prompts for desktop clients: ready-made requests that lead an assistant through the tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from adapters import RequestError
from server.core import Caller, OrchestratorService

__all__ = ["install_prompts"]


def install_prompts(mcp: MCPServer, service: OrchestratorService, who: Callable[[], Caller]) -> None:
    """Register ``produce_movie`` and ``review_decisions``."""

    @mcp.prompt(
        title="Produce a movie",
        description="Start a movie production for a project from a brief and see it through: follow its "
        "progress, answer its decisions, report the deliverables.",
    )
    def produce_movie(
        project_id: Annotated[str, Field(description="Auto-Movie project id")],
        brief: Annotated[str, Field(description="what the movie is about, in plain words")],
    ) -> str:
        return (
            f"Produce a movie for project {project_id!r} from this brief:\n\n{brief}\n\n"
            "1. Call start_workflow with project_id, workflow='movie_production' and the brief (pass an "
            "idempotency_key so a retried call does not start a second production). Keep the workflow_id.\n"
            "2. Call get_status with the workflow_id, wait_seconds=60 and until=['waiting_decision', "
            "'completed', 'failed'], again and again; tell me the progress messages in a sentence.\n"
            "3. When pending_decisions appear, show me each question with its options and your "
            "recommendation, and ask me. Then call submit_decision with my choice (and my reason as "
            "comment). Never choose for me.\n"
            "4. If it fails, show last_error; offer retry_step.\n"
            "5. When it completes, list the deliverables from result with their URIs."
        )

    @mcp.prompt(
        title="Review open decisions",
        description="Walk through a workflow's open decisions one by one and record the answers.",
    )
    async def review_decisions(
        workflow_id: Annotated[str, Field(description="id returned by start_workflow")],
    ) -> str:
        try:
            status = await service.get_status(who(), workflow_id)
        except RequestError as exc:
            return (
                f"Workflow {workflow_id!r} cannot be read ({exc}). Call list_workflows with "
                "status='waiting_decision' to find workflows with open decisions."
            )
        if not status.pending_decisions:
            return (
                f"Workflow {workflow_id} ({status.workflow} of {status.project_id}) is {status.status} and "
                "has no open decision. Call get_status with wait_seconds=60 and until=['waiting_decision'] "
                "to wait for the next one."
            )
        lines = [
            f"Workflow {workflow_id} ({status.workflow} of project {status.project_id}) waits for "
            f"{len(status.pending_decisions)} decision(s). For each, show me the question, the options "
            "and what you would pick and why; ask me; then call submit_decision with workflow_id, "
            "decision_id and my choice (my reason as comment). Never choose for me.",
            "",
        ]
        for d in status.pending_decisions:
            lines.append(
                f"- decision_id {d.id}: {d.question} (options: {', '.join(d.options) or 'free text'})"
            )
        return "\n".join(lines)
