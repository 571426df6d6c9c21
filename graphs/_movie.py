"""The production graphs: `movie_production` and the smaller `character_development` and
`episode_production`, built from one set of nodes.

movie_production:
    load_project → concepts → choose_concept (human: pick one, or ask for more) → story →
    evaluate_story ⇄ revise_story (at most K revisions, then a human decides) → breakdown →
    develop_character for each character (Send) → relationships → visual_design ∥ audio_design → plan_scenes →
    produce_scene for each scene (Send) → post_production → final_assembly (validates every deliverable) →
    final_approval (human) → distribute → summary
Progress goes to the custom stream at every node and to Auto-Movie after every phase.
"""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, Literal, TypedDict

import structlog
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, Send, interrupt

from adapters import tracing
from adapters.errors import OutsideError, PermanentError, TransientError
from graphs._agents import run_agent
from graphs._ports import Ports
from graphs._registry import PHASE_TO_AUTO_MOVIE, registry
from graphs._transforms import REQUIRED_DELIVERABLES

__all__ = ["MovieState", "build_character_development", "build_episode_production", "build_movie_production"]

log = structlog.get_logger(__name__)

_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.5, max_interval=10.0, retry_on=TransientError)
# The share of the whole production each phase ends at, for percent in status and Auto-Movie.
_PHASE_END = {"story": 20.0, "character": 35.0, "visual": 45.0, "audio": 50.0, "scene": 80.0, "post": 92.0,
              "final": 100.0}  # fmt: skip


class MovieState(TypedDict, total=False):
    """State of the production graphs (everything here is checkpointed)."""

    project_id: str
    brief: str
    # Options travel in the run context (`Ports.options`); this channel only keeps checkpoints written
    # before that loadable.
    options: dict[str, Any]
    project: dict[str, Any]
    concepts: list[dict[str, Any]]
    concept_round: int
    concept: dict[str, Any]
    world: dict[str, Any]
    themes: list[str]
    story: dict[str, Any]
    story_score: float
    revisions: int
    max_revisions: int
    story_verdict: str
    characters: list[dict[str, Any]]
    scenes: list[dict[str, Any]]
    character_results: Annotated[list[dict[str, Any]], operator.add]
    relationships: list[dict[str, Any]]
    visual: dict[str, Any]
    audio: dict[str, Any]
    scene_results: Annotated[list[dict[str, Any]], operator.add]
    post: dict[str, Any]
    deliverables: dict[str, Any]
    qc: dict[str, Any]
    approval: str
    outcome: str
    summary: dict[str, Any]
    agents_run: Annotated[list[str], operator.add]
    phases_done: Annotated[list[str], operator.add]


def _progress(phase: str, step: str, percent: float, message: str) -> None:
    get_stream_writer()({"phase": PHASE_TO_AUTO_MOVIE.get(phase, phase), "step": step, "percent": round(percent, 1),
                         "message": message})  # fmt: skip


def _merge(*parts: MovieState) -> MovieState:
    """Combine node outputs, concatenating the list channels that have reducers."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if k in {"agents_run", "phases_done"}:
                out[k] = [*out.get(k, []), *list(v)]  # type: ignore[call-overload]
            else:
                out[k] = v
    return out  # type: ignore[return-value]


async def _phase_done(ports: Ports, state: MovieState, phase: str) -> MovieState:
    """Report the end of a phase to Auto-Movie; never fails the production."""
    done = [*state.get("phases_done", []), phase]
    _progress(phase, f"{phase}.done", _PHASE_END[phase], f"{phase} phase complete")
    try:
        await run_agent(
            ports,
            "progress_reporter",
            {"phase": PHASE_TO_AUTO_MOVIE[phase], "completed": [PHASE_TO_AUTO_MOVIE[p] for p in done],
             "percent": _PHASE_END[phase]},
            step=f"progress.{phase}",
        )  # fmt: skip
    except OutsideError as exc:
        log.warning("progress.write_back_failed", phase=phase, error=str(exc)[:300])
        return {"phases_done": [phase]}
    return {"phases_done": [phase], "agents_run": ["progress_reporter"]}


def _decide(ports: Ports, question: str, options: list[str], recommended: str, **context: Any) -> str:
    """Ask a human (an interrupt), unless the workflow was started with auto_approve."""
    if ports.options.auto_approve:
        return recommended
    answer = interrupt({"question": question, "options": options, "kind": "choice",
                        "context": {"recommended": recommended, **context}})  # fmt: skip
    return str(answer)


# -- story ----------------------------------------------------------------------------------------


async def load_project(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Read the project from Auto-Movie (defaults when it has none) and mark it in production."""
    _progress("story", "load_project", 1, "reading the project")
    try:
        out = await run_agent(
            runtime.context, "project_loader", {"project_id": state["project_id"]}, step="project"
        )
        project = out.output["project"]
        agents = [out.agent_id]
    except PermanentError as exc:
        log.warning("project.unavailable_using_defaults", error=str(exc)[:200])
        project = {
            "id": state["project_id"],
            "genre": runtime.context.options.genre,
            "projectSettings": {},
        }
        agents = []
    try:
        await runtime.context.auto_movie.set_status(state["project_id"], "production")
    except OutsideError as exc:
        log.warning("project.status_not_updated", error=str(exc)[:200])
    return {"project": project, "agents_run": agents, "concept_round": 0, "revisions": 0,
            "max_revisions": runtime.context.options.max_revisions}  # fmt: skip


async def write_concepts(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Series creator writes N concept options (a new batch each round)."""
    rnd = state.get("concept_round", 0)
    _progress("story", "concepts", 3 + rnd, f"writing concept options (round {rnd + 1})")
    out = await run_agent(
        runtime.context, "series_creator",
        {"brief": state.get("brief", ""), "project": state.get("project", {}), "round": rnd,
         "count": runtime.context.options.concept_count},
        step=f"concepts.{rnd}",
    )  # fmt: skip
    return {"concepts": out.output["concepts"], "agents_run": [out.agent_id]}


def choose_concept(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """A human picks one concept, or asks for more."""
    concepts = state["concepts"]
    titles = [c["title"] for c in concepts]
    _progress("story", "choose_concept", 5, "waiting for a concept choice")
    choice = _decide(runtime.context, "Which concept should the production develop?", [*titles, "more"], titles[0],
                     concepts=concepts)  # fmt: skip
    if choice == "more":
        return {"concept_round": state.get("concept_round", 0) + 1, "concept": {}}
    return {"concept": next(c for c in concepts if c["title"] == choice)}


def _after_choice(state: MovieState) -> Literal["write_concepts", "story"]:
    return "story" if state.get("concept") else "write_concepts"


async def story(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """World, themes and the story; the story goes to the Brain as knowledge."""
    ports = runtime.context
    concept = state.get("concept") or {"title": "Untitled", "logline": state.get("brief", "")}
    _progress("story", "story", 8, "building the world")
    world = await run_agent(
        ports, "world_builder", {"concept": concept, "brief": state.get("brief")}, step="world"
    )
    themes = await run_agent(ports, "theme_analyst", {"concept": concept}, step="themes")
    _progress("story", "story", 11, "writing the story")
    written = await run_agent(
        ports, "story_architect",
        {"concept": concept, "world": world.output["world"], "themes": themes.output["themes"],
         "brief": state.get("brief")},
        step="story",
    )  # fmt: skip
    kept = await run_agent(ports, "knowledge_keeper", {"content": written.output["story"].get("synopsis", "")},
                           step="story.knowledge")  # fmt: skip
    return {"concept": concept, "world": world.output["world"], "themes": themes.output["themes"],
            "story": written.output["story"],
            "agents_run": [world.agent_id, themes.agent_id, written.agent_id, kept.agent_id]}  # fmt: skip


async def evaluate_story(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """The story's quality gate: a department evaluation scored 0-100."""
    rev = state.get("revisions", 0)
    _progress("story", "evaluate_story", 13 + rev, f"evaluating the story (revision {rev})")
    story_doc = state["story"]
    gather = [{"content": json.dumps(story_doc, default=str)[:4000], "summary": str(story_doc.get("synopsis", ""))[:1000],
               "context": f"story of {(state.get('concept') or {}).get('title', 'the production')}, revision {rev}"}]  # fmt: skip
    out = await run_agent(
        runtime.context, "story_quality_evaluator",
        {"story": story_doc, "department": "story", "gather_data": gather,
         "threshold": runtime.context.options.story_threshold, "prompt": story_doc.get("synopsis", "")},
        step=f"story.evaluate.{rev}",
    )  # fmt: skip
    raw = out.output.get("story_score", out.output)
    # The Task Service's evaluation answers `rating` (0-100); the local heuristic and older builds `score`.
    value = raw.get("rating", raw.get("score")) if isinstance(raw, dict) else raw
    score = float(value or 0)
    return {"story_score": score, "agents_run": [out.agent_id]}


def _gate(state: MovieState, runtime: Runtime[Ports]) -> Literal["breakdown", "revise_story", "story_review"]:
    threshold = runtime.context.options.story_threshold
    if state.get("story_score", 0) >= threshold or state.get("story_verdict") == "approve":
        return "breakdown"
    if state.get("revisions", 0) < state.get("max_revisions", 2):
        return "revise_story"
    return "story_review"


async def revise_story(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Story reviser rewrites the story using the evaluation."""
    rev = state.get("revisions", 0) + 1
    _progress("story", "revise_story", 13 + rev, f"revising the story (revision {rev})")
    out = await run_agent(
        runtime.context, "story_reviser",
        {"story": state["story"], "story_score": state.get("story_score"), "revision": rev - 1,
         "concept": state.get("concept"), "brief": state.get("brief")},
        step=f"story.revise.{rev}",
    )  # fmt: skip
    return {"story": out.output["story"], "revisions": rev, "agents_run": [out.agent_id]}


def story_review(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """After K revisions below the bar, a human approves, asks for one more revision, or rejects."""
    threshold = runtime.context.options.story_threshold
    verdict = _decide(
        runtime.context,
        f"The story scored {state.get('story_score')} after {state.get('revisions')} revisions "
        f"(the bar is {threshold}). Approve it as it is, revise once more, or reject the production?",
        ["approve", "revise", "reject"], "approve", score=state.get("story_score"),
    )  # fmt: skip
    if verdict == "revise":
        return {"story_verdict": "revise", "max_revisions": state.get("revisions", 0) + 1}
    return {"story_verdict": verdict, "outcome": "rejected" if verdict == "reject" else ""}


def _after_review(state: MovieState) -> Literal["breakdown", "revise_story", "summary"]:
    verdict = state.get("story_verdict")
    if verdict == "reject":
        return "summary"
    return "revise_story" if verdict == "revise" else "breakdown"


async def breakdown(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Episode breakdown: the scenes and the cast."""
    opts = runtime.context.options
    # The widest steps that follow are one branch per character, then one per scene.
    runtime.context.budget.check_width(max(opts.scenes, opts.characters), where="breakdown")
    out = await run_agent(runtime.context, "episode_breakdown",
                          {"story": state["story"], "scenes": opts.scenes, "characters": opts.characters},
                          step="breakdown")  # fmt: skip
    done = await _phase_done(runtime.context, state, "story")
    return _merge({"scenes": out.output["scenes"], "characters": out.output["characters"],
                   "agents_run": [out.agent_id]}, done)  # fmt: skip


# -- characters -----------------------------------------------------------------------------------


def fan_out_characters(state: MovieState) -> list[Send]:
    """One develop_character task per character."""
    return [Send("develop_character", {"character": c, "index": i, "story": state.get("story", {})})
            for i, c in enumerate(state.get("characters", []))]  # fmt: skip


async def develop_character(item: dict[str, Any], runtime: Runtime[Ports]) -> MovieState:
    """Create the character in the Brain, check its consistency, design its look and voice."""
    ports = runtime.context
    c, i = item["character"], item["index"]
    step = f"character.{i}"
    _progress("character", f"character.{c['name']}", 22, f"developing {c['name']}")
    created = await run_agent(ports, "character_creator", {"character": c}, step=step)
    brain_id = created.output["character_id"].get("character_id")
    similar = await run_agent(ports, "consistency_checker", {"character": c}, step=step)
    clashes = [r for r in similar.output["similar"].get("results", [])
               if r.get("id") != brain_id and r.get("name") != c["name"] and r.get("similarity_score", 0) > 0.92]  # fmt: skip
    arc = await run_agent(ports, "arc_manager", {"character": c, "story": item.get("story")}, step=step)
    look = f"{c['name']}, {c.get('appearance', '')}, character portrait"
    portrait = await run_agent(ports, "character_designer", {"character": c, "prompt": look}, step=step)
    costume = await run_agent(ports, "costume_designer", {"character": c}, step=step)
    voice = await run_agent(
        ports, "voice_creator", {"character": c, "prompt": f"voice of {c['name']}"}, step=step
    )
    result = {"name": c["name"], "brain_id": brain_id, "consistency": {"clashes": clashes},
              "arc": arc.output["arc"], "portrait": portrait.output["portrait"],
              "costume": costume.output["costume"], "voice": voice.output["voice"]}  # fmt: skip
    agents = [
        created.agent_id,
        similar.agent_id,
        arc.agent_id,
        portrait.agent_id,
        costume.agent_id,
        voice.agent_id,
    ]
    return {"character_results": [result], "agents_run": agents}


async def relationships(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Map how the cast relate; ends the character phase."""
    out = await run_agent(runtime.context, "relationship_mapper", {"characters": state.get("characters", [])},
                          step="relationships")  # fmt: skip
    done = await _phase_done(runtime.context, state, "character")
    return _merge({"relationships": out.output["relationships"], "agents_run": [out.agent_id]}, done)


# -- visual and audio (in parallel) ---------------------------------------------------------------


async def visual_design(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Style guide, concept art, environments, storyboard, props, lighting, colour script."""
    ports = runtime.context
    concept, scenes = state.get("concept", {}), state.get("scenes", [])
    _progress("visual", "visual_design", 38, "designing the look")
    style = await run_agent(ports, "style_guide_designer", {"concept": concept, "project": state.get("project")},
                            step="visual")  # fmt: skip
    sg = style.output["style_guide"]
    art = await run_agent(ports, "concept_artist",
                          {"concept": concept, "prompt": f"concept art: {concept.get('logline', '')}"}, step="visual")  # fmt: skip
    env = await run_agent(ports, "environment_designer",
                          {"world": state.get("world"), "prompt": f"environment: {state.get('world', {}).get('setting')}"},
                          step="visual")  # fmt: skip
    board = await run_agent(ports, "storyboard_artist", {"scenes": scenes}, step="visual")
    props = await run_agent(ports, "prop_designer", {"story": state.get("story")}, step="visual")
    light = await run_agent(ports, "lighting_designer", {"style_guide": sg}, step="visual")
    colour = await run_agent(ports, "color_script", {"scenes": scenes, "style_guide": sg}, step="visual")
    outs = [style, art, env, board, props, light, colour]
    visual = {k: v for o in outs for k, v in o.output.items()}
    return {"visual": visual, "agents_run": [o.agent_id for o in outs]}


async def audio_design(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Score, sound palette, ambience, and the audio quality check."""
    ports = runtime.context
    _progress("audio", "audio_design", 40, "designing the sound")
    themes = state.get("themes", [])
    score = await run_agent(ports, "composer", {"themes": themes, "prompt": f"score: {', '.join(themes)}"},
                            step="audio")  # fmt: skip
    sfx = await run_agent(ports, "sound_designer", {"world": state.get("world"), "prompt": "sound palette"},
                          step="audio")  # fmt: skip
    amb = await run_agent(ports, "ambience_designer", {"world": state.get("world")}, step="audio")
    heard = [{"content": json.dumps(o.output, default=str)[:2000], "summary": f"{o.agent_id} output",
              "context": "audio design: score and sound palette"} for o in (score, sfx)]  # fmt: skip
    qa = await run_agent(ports, "audio_quality_evaluator",
                         {"score": score.output.get("score"), "department": "audio", "department_number": 2,
                          "gather_data": heard, "threshold": 50}, step="audio")  # fmt: skip
    outs = [score, sfx, amb, qa]
    audio = {k: v for o in outs for k, v in o.output.items()}
    return {"audio": audio, "agents_run": [o.agent_id for o in outs]}


async def plan_scenes(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Join of visual and audio design; ends both phases."""
    visual = await _phase_done(runtime.context, state, "visual")
    audio = await _phase_done(runtime.context, {**state, "phases_done": [*state.get("phases_done", []), "visual"]},
                              "audio")  # fmt: skip
    return _merge(visual, audio)


# -- scenes ---------------------------------------------------------------------------------------


def fan_out_scenes(state: MovieState) -> list[Send]:
    """One produce_scene task per scene."""
    ctx = {"style_guide": state.get("visual", {}).get("style_guide", {}), "characters": state.get("characters", []),
           "total": len(state.get("scenes", []))}  # fmt: skip
    return [Send("produce_scene", {"scene": s, **ctx}) for s in state.get("scenes", [])]


async def produce_scene(item: dict[str, Any], runtime: Runtime[Ports]) -> MovieState:
    """Plan, write, render (image, video or animatic) and voice one scene."""
    ports = runtime.context
    s = item["scene"]
    step = f"scene.{s['index']}"
    _progress(
        "scene", step, 50 + 30 * (s["index"] + 1) / max(1, item.get("total", 1)), f"producing {s['title']}"
    )
    plan = await run_agent(ports, "scene_planner", {"scene": s}, step=step)
    camera = await run_agent(ports, "camera_director", {"shot_list": plan.output["shot_list"]}, step=step)
    lines = await run_agent(
        ports, "dialogue_writer", {"scene": s, "characters": item.get("characters")}, step=step
    )
    image = await run_agent(ports, "scene_image_generator",
                            {"scene": s, "prompt": f"{s['title']}: {s['summary']}"}, step=step)  # fmt: skip
    clip = await run_agent(ports, "video_generator", {"scene": s, "scene_image": image.output["scene_image"]},
                           step=step)  # fmt: skip
    voice = await run_agent(ports, "scene_dialogue_audio",
                            {"dialogue": lines.output["dialogue"], "prompt": " ".join(lines.output["dialogue"]["lines"])},
                            step=step)  # fmt: skip
    cont = await run_agent(
        ports, "continuity_checker", {"scene": s, "characters": item.get("characters")}, step=step
    )
    outs = [plan, camera, lines, image, clip, voice, cont]
    result = {"index": s["index"], "title": s["title"], "shot_list": plan.output["shot_list"],
              "dialogue": lines.output["dialogue"], "image": image.output["scene_image"],
              "clip": clip.output["clip"], "clip_by": clip.agent_id, "dialogue_audio": voice.output["dialogue_audio"],
              "continuity": cont.output["continuity"]}  # fmt: skip
    return {"scene_results": [result], "agents_run": [o.agent_id for o in outs]}


# -- post and final -------------------------------------------------------------------------------


async def post_production(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Edit, mix, grade, subtitle, composite, title and master."""
    ports = runtime.context
    done_scene = await _phase_done(ports, state, "scene")
    scenes = sorted(state.get("scene_results", []), key=lambda r: r["index"])
    _progress("post", "post_production", 84, "editing and mixing")
    edit = await run_agent(ports, "video_editor", {"scenes_done": scenes}, step="post")
    mix = await run_agent(ports, "audio_mixer", {"scenes_done": scenes, "score": state.get("audio", {}).get("score"),
                                                 "prompt": "final mix"}, step="post")  # fmt: skip
    grade = await run_agent(ports, "colorist", {"edit_decision_list": edit.output["edit_decision_list"],
                                                "colour_script": state.get("visual", {}).get("colour_script")},
                            step="post")  # fmt: skip
    subs = await run_agent(ports, "subtitle_generator", {"scenes_done": scenes}, step="post")
    vfx = await run_agent(ports, "vfx_compositor", {"edit_decision_list": edit.output["edit_decision_list"]},
                          step="post")  # fmt: skip
    titles = await run_agent(ports, "title_designer", {"concept": state.get("concept")}, step="post")
    master = await run_agent(ports, "sound_mastering", {"mix": mix.output["mix"]}, step="post")
    outs = [edit, mix, grade, subs, vfx, titles, master]
    post = {k: v for o in outs for k, v in o.output.items()}
    done_post = await _phase_done(
        ports, {**state, "phases_done": [*state.get("phases_done", []), "scene"]}, "post"
    )
    return _merge({"post": post, "agents_run": [o.agent_id for o in outs]}, done_scene, done_post)


def _deliverables(state: MovieState) -> dict[str, Any]:
    scenes = state.get("scene_results", [])
    chars = state.get("character_results", [])
    post = state.get("post", {})
    n = len(state.get("scenes", []))
    return {
        "concept": state.get("concept"),
        "story": state.get("story"),
        "characters": [{"name": c["name"], "portrait": c["portrait"].get("result_url")} for c in chars]
        if chars and len(chars) == len(state.get("characters", [])) and all(c["portrait"].get("result_url") for c in chars)
        else None,
        "scene_images": [s["image"].get("result_url") for s in scenes]
        if len(scenes) == n and all(s["image"].get("result_url") for s in scenes) else None,
        "scene_clips": [s["clip"].get("result_url") for s in scenes]
        if len(scenes) == n and all(s["clip"].get("result_url") for s in scenes) else None,
        "edit_decision_list": (post.get("edit_decision_list") or {}).get("result_url"),
        "mix": post.get("mix"),
        "subtitles": (post.get("subtitles") or {}).get("result_url"),
        "titles": post.get("titles"),
    }  # fmt: skip


async def final_assembly(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Quality control over every required deliverable (FR-012), trailer and package.

    Raises:
        PermanentError: a required deliverable is missing (the status names which).
    """
    ports = runtime.context
    _progress("final", "final_assembly", 94, "checking every deliverable")
    deliverables = _deliverables(state)
    qc = await run_agent(ports, "quality_control", {"deliverables": deliverables}, step="final")
    report = qc.output["qc_report"]
    if not report["passed"]:
        msg = f"final assembly: required deliverables missing: {report['missing']} (checked {list(REQUIRED_DELIVERABLES)})"
        raise PermanentError(msg)
    trailer = await run_agent(ports, "trailer_editor",
                              {"edit_decision_list": state.get("post", {}).get("edit_decision_list")}, step="final")  # fmt: skip
    package = await run_agent(ports, "packager", {"deliverables": deliverables}, step="final")
    return {"deliverables": deliverables, "qc": report,
            "agents_run": [qc.agent_id, trailer.agent_id, package.agent_id]}  # fmt: skip


def final_approval(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """A human approves the final cut for distribution, or rejects it."""
    _progress("final", "final_approval", 97, "waiting for final approval")
    answer = _decide(runtime.context, "Approve the final cut for distribution?", ["approve", "reject"], "approve",
                     deliverables=list(state.get("deliverables", {})))  # fmt: skip
    return {"approval": answer, "outcome": "" if answer == "approve" else "rejected at final approval"}


def _after_approval(state: MovieState) -> Literal["distribute", "summary"]:
    return "distribute" if state.get("approval") == "approve" else "summary"


async def distribute(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Mark the project completed in Auto-Movie."""
    out = await run_agent(runtime.context, "distribution", {"package": {}, "project_id": state["project_id"]},
                          step="distribute")  # fmt: skip
    done = await _phase_done(runtime.context, state, "final")
    return _merge({"outcome": "distributed", "agents_run": [out.agent_id]}, done)


def summary(state: MovieState) -> MovieState:
    """What the production made."""
    agents = state.get("agents_run", [])
    reg = registry()
    calls: dict[str, int] = {}
    for a in agents:
        service = reg[a].operation.service if a in reg.agents else ""
        if service and service != "llm":  # the writer is reported apart: it may be local
            calls[service] = calls.get(service, 0) + 1
    d = state.get("deliverables", {})
    return {"summary": {
        "outcome": state.get("outcome") or "completed",
        "concept": (state.get("concept") or {}).get("title"),
        "story_score": state.get("story_score"),
        "revisions": state.get("revisions", 0),
        "phases": state.get("phases_done", []),
        "agent_executions": len(agents),
        "outside_calls": calls,
        "writer_calls": sum(1 for a in agents if a in reg.agents and reg[a].operation.kind == "writer"),
        "distinct_agents": len(set(agents)),
        "characters": len(state.get("character_results", [])),
        "scenes": len(state.get("scene_results", [])),
        "scene_clips_by": sorted({s.get("clip_by", "") for s in state.get("scene_results", [])}),
        "deliverables": sorted(k for k, v in d.items() if v),
    }}  # fmt: skip


# -- builders -------------------------------------------------------------------------------------

Builder = StateGraph[MovieState, Ports, Any, Any]


def _add(b: Builder, name: str, fn: Any) -> None:
    b.add_node(name, tracing.traced_node(name, fn), retry_policy=_RETRY)


async def concept_from_brief(state: MovieState, runtime: Runtime[Ports]) -> MovieState:
    """Templates without a concept choice take the brief as the concept."""
    _progress("story", "concept_from_brief", 4, "taking the brief as the concept")
    return {"concept": {"title": runtime.context.options.title, "logline": state.get("brief", "")}}


def _production(*, choose_concept_step: bool, final_approval_step: bool) -> Builder:
    """The production graph; templates leave out the concept choice and the final approval."""
    b: Builder = StateGraph(MovieState, context_schema=Ports)
    nodes: list[tuple[str, Any]] = [("load_project", load_project)]
    nodes += (
        [("write_concepts", write_concepts), ("choose_concept", choose_concept)]
        if choose_concept_step
        else [("concept_from_brief", concept_from_brief)]
    )
    nodes += [("story", story), ("evaluate_story", evaluate_story), ("revise_story", revise_story),
              ("story_review", story_review), ("breakdown", breakdown), ("develop_character", develop_character),
              ("relationships", relationships), ("visual_design", visual_design), ("audio_design", audio_design),
              ("plan_scenes", plan_scenes), ("produce_scene", produce_scene), ("post_production", post_production),
              ("final_assembly", final_assembly), ("summary", summary)]  # fmt: skip
    if final_approval_step:
        nodes += [("final_approval", final_approval), ("distribute", distribute)]
    for name, fn in nodes:
        _add(b, name, fn)
    b.add_edge(START, "load_project")
    if choose_concept_step:
        b.add_edge("load_project", "write_concepts")
        b.add_edge("write_concepts", "choose_concept")
        b.add_conditional_edges("choose_concept", _after_choice, ["write_concepts", "story"])
    else:
        b.add_edge("load_project", "concept_from_brief")
        b.add_edge("concept_from_brief", "story")
    b.add_edge("story", "evaluate_story")
    b.add_conditional_edges("evaluate_story", _gate, ["breakdown", "revise_story", "story_review"])
    b.add_edge("revise_story", "evaluate_story")
    b.add_conditional_edges("story_review", _after_review, ["breakdown", "revise_story", "summary"])
    b.add_conditional_edges("breakdown", fan_out_characters, ["develop_character"])
    b.add_edge("develop_character", "relationships")
    b.add_edge("relationships", "visual_design")
    b.add_edge("relationships", "audio_design")
    b.add_edge(["visual_design", "audio_design"], "plan_scenes")
    b.add_conditional_edges("plan_scenes", fan_out_scenes, ["produce_scene"])
    b.add_edge("produce_scene", "post_production")
    b.add_edge("post_production", "final_assembly")
    if final_approval_step:
        b.add_edge("final_assembly", "final_approval")
        b.add_conditional_edges("final_approval", _after_approval, ["distribute", "summary"])
        b.add_edge("distribute", "summary")
    else:
        b.add_edge("final_assembly", "summary")
    b.add_edge("summary", END)
    return b


def build_movie_production() -> Builder:
    """The full production graph."""
    return _production(choose_concept_step=True, final_approval_step=True)


def build_character_development() -> Builder:
    """Story and cast only: load project → story → breakdown → characters (Send) → relationships."""
    b: Builder = StateGraph(MovieState, context_schema=Ports)
    for name, fn in [("load_project", load_project), ("concept_from_brief", concept_from_brief), ("story", story),
                     ("breakdown", breakdown), ("develop_character", develop_character),
                     ("relationships", relationships), ("summary", summary)]:  # fmt: skip
        _add(b, name, fn)
    b.add_edge(START, "load_project")
    b.add_edge("load_project", "concept_from_brief")
    b.add_edge("concept_from_brief", "story")
    b.add_edge("story", "breakdown")
    b.add_conditional_edges("breakdown", fan_out_characters, ["develop_character"])
    b.add_edge("develop_character", "relationships")
    b.add_edge("relationships", "summary")
    b.add_edge("summary", END)
    return b


def build_episode_production() -> Builder:
    """One episode of an existing series: the production without concept choice and final approval."""
    return _production(choose_concept_step=False, final_approval_step=False)
