"""`preview`: the smallest production — a concept, one keyframe from the Task Service, a summary.

It is the walking skeleton of the orchestrator: every layer (tool, queue, engine, checkpoint, outside
service, status) is crossed by these three nodes.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from adapters import tracing
from adapters.errors import TransientError
from graphs._ports import Ports

__all__ = ["PreviewState", "build_preview"]


class PreviewState(TypedDict, total=False):
    """State of the preview graph."""

    project_id: str
    brief: str
    options: dict[str, Any]
    concept: dict[str, Any]
    keyframe: dict[str, Any]
    summary: dict[str, Any]


def _progress(phase: str, step: str, percent: float, message: str) -> None:
    get_stream_writer()({"phase": phase, "step": step, "percent": percent, "message": message})


def concept(state: PreviewState) -> PreviewState:
    """Turn the brief into a logline and a visual prompt (deterministic local writer)."""
    _progress("story_development", "concept", 10, "writing the concept")
    brief = state.get("brief") or "an untitled story"
    seed = hashlib.sha256(brief.encode()).hexdigest()[:6]
    logline = f"{brief.strip().rstrip('.')} — told in three acts (concept {seed})."
    return {"concept": {"logline": logline, "visual_prompt": f"key art, cinematic, {brief[:200]}"}}


async def keyframe(state: PreviewState, runtime: Runtime[Ports]) -> PreviewState:
    """Ask the Task Service for one key image of the concept."""
    _progress("visual_design", "keyframe", 40, "rendering the key image")
    result = await runtime.context.tasks.run_task(
        "keyframe",
        "generate_image",
        {"prompt": state["concept"]["visual_prompt"], "image_params": {"width": 768, "height": 432}},
    )
    return {"keyframe": result}


def assemble(state: PreviewState) -> PreviewState:
    """Gather the deliverables into a summary."""
    _progress("final_assembly", "assemble", 90, "assembling the preview")
    return {
        "summary": {
            "logline": state["concept"]["logline"],
            "keyframe_url": state["keyframe"].get("result_url"),
            "deliverables": ["concept", "keyframe"],
        }
    }


def build_preview() -> StateGraph[PreviewState, Ports, Any, Any]:
    """The uncompiled preview graph."""
    retry = RetryPolicy(max_attempts=4, initial_interval=0.5, retry_on=TransientError)
    builder: StateGraph[PreviewState, Ports, Any, Any] = StateGraph(PreviewState, context_schema=Ports)
    builder.add_node("concept", tracing.traced_node("concept", concept))
    builder.add_node("keyframe", tracing.traced_node("keyframe", keyframe), retry_policy=retry)
    builder.add_node("assemble", tracing.traced_node("assemble", assemble))
    builder.add_edge(START, "concept")
    builder.add_edge("concept", "keyframe")
    builder.add_edge("keyframe", "assemble")
    builder.add_edge("assemble", END)
    return builder
