"""Local agent operations: deterministic transforms that need no outside service.

Each takes the agent's inputs and a `LocalContext` (to write deliverable files) and returns the
agent's outputs. They are real work on real data (edit lists, subtitles, manifests, checks), not
placeholders, and they are the alternatives that keep a production going when a service fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol
from xml.sax.saxutils import escape

__all__ = ["REQUIRED_DELIVERABLES", "TRANSFORMS", "LocalContext"]


class LocalContext(Protocol):
    """What a local transform may use."""

    @property
    def workflow_id(self) -> str:
        """The workflow the files belong to."""
        ...

    async def write_file(self, name: str, content: str | bytes) -> str:
        """Write a deliverable; returns its URL or path."""
        ...


Transform = Callable[[dict[str, Any], LocalContext], Any]
TRANSFORMS: dict[str, Transform] = {}


def _t(fn: Transform) -> Transform:
    TRANSFORMS[fn.__name__.removeprefix("t_")] = fn
    return fn


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8], 16)


def _words(text: str) -> list[str]:
    return [w.strip(".,;:!?\"'").lower() for w in text.split() if len(w) > 3]


@_t
def t_loglines(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    brief = str(inp.get("brief") or "an untold story")
    n = int(inp.get("count", 3))
    angles = ["as a mystery", "as a coming-of-age tale", "as a quiet comedy", "as a thriller", "as a fable"]
    return {"concepts": [{"title": f"Option {i + 1}", "logline": f"{brief.rstrip('.')}, told {angles[i % 5]}."}
                         for i in range(n)]}  # fmt: skip


@_t
def t_themes(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    words = _words(json.dumps(inp.get("concept", {})))
    common = sorted(set(words), key=lambda w: (-words.count(w), w))[:4]
    return {"themes": common or ["change"]}


@_t
def t_story_heuristics(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    story = inp.get("story", {})
    acts = story.get("acts", [])
    text = json.dumps(story)
    score = min(100.0, 40 + 10 * len(acts) + min(30, len(set(_words(text))) / 5))
    return {"score": round(score, 1), "notes": [f"{len(acts)} acts", f"{len(text)} characters"]}


@_t
def t_breakdown(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    story = inp.get("story", {})
    n_scenes = int(inp["scenes"])
    n_chars = int(inp["characters"])
    acts = story.get("acts") or ["setup", "confrontation", "resolution"]
    cast = story.get("characters") or []
    characters = [
        cast[i] if i < len(cast) else {"name": f"Character {i + 1}", "role": "supporting",
                                        "personality": "curious and stubborn", "appearance": "weathered coat"}
        for i in range(n_chars)
    ]  # fmt: skip
    scenes = [
        {"index": i, "act": acts[min(len(acts) - 1, i * len(acts) // max(1, n_scenes))],
         "title": f"Scene {i + 1}", "summary": f"{acts[min(len(acts) - 1, i * len(acts) // max(1, n_scenes))]} beat {i + 1}",
         "characters": [c["name"] for c in characters[: 1 + i % max(1, len(characters))]]}
        for i in range(n_scenes)
    ]  # fmt: skip
    return {"episodes": [{"number": 1, "scenes": n_scenes}], "scenes": scenes, "characters": characters}


@_t
async def t_knowledge_note(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    """The story kept as a note of the production (where a Brain without knowledge tools cannot keep it)."""
    note = {"kind": "story", "content": str(inp.get("content", ""))[:4000],
            "kept": "locally: the Brain offered no store_knowledge tool"}  # fmt: skip
    return {
        "knowledge_id": {"note": await ctx.write_file("story-knowledge.json", json.dumps(note, indent=1))}
    }


@_t
def t_relationships(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    names = [c.get("name", "?") for c in inp.get("characters", [])]
    kinds = ["allies", "rivals", "family", "strangers"]
    return {"relationships": [{"a": a, "b": b, "kind": kinds[_seed(a, b) % 4]}
                              for i, a in enumerate(names) for b in names[i + 1 :]]}  # fmt: skip


def _svg_card(width: int, height: int, fill: str, label: str) -> str:
    """A small SVG card: a coloured rectangle with a label (escaped, since names come from the writer)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="{width}" height="{height}" fill="{fill}"/>'
        f'<text x="8" y="{height // 2}">{escape(label)}</text></svg>'
    )


@_t
async def t_sketch(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    c = inp.get("character", {})
    name = str(c.get("name", ""))
    svg = _svg_card(120, 160, f"#{_seed(c.get('name')) % 0xFFFFFF:06x}", name)
    return {
        "portrait": {"result_url": await ctx.write_file(f"sketch-{name or 'x'}.svg", svg), "kind": "sketch"}
    }


@_t
def t_voice_match(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    voices = ["warm baritone", "bright alto", "gravelly tenor", "soft soprano"]
    return {"voice": {"library_voice": voices[_seed(inp.get("character", {}).get("name")) % 4]}}


@_t
def t_style_guide(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    palettes = [
        ["#0b3d91", "#f2c14e", "#e4572e"],
        ["#2e4057", "#66a182", "#caffb9"],
        ["#3d2c2e", "#d4a373", "#fefae0"],
    ]
    seed = _seed(inp.get("concept"))
    return {
        "style_guide": {
            "palette": palettes[seed % 3],
            "aspect_ratio": (inp.get("project") or {}).get("projectSettings", {}).get("aspectRatio", "16:9"),
            "look": ["painterly", "photoreal", "graphic"][seed % 3],
        }
    }


@_t
def t_mood_board(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"concept_art": {"mood_board": _words(json.dumps(inp.get("concept", {})))[:8]}}


@_t
def t_storyboard(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {
        "storyboard": [{"scene": s["index"], "panels": 3 + s["index"] % 3} for s in inp.get("scenes", [])]
    }


@_t
def t_lighting(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    look = (inp.get("style_guide") or {}).get("look", "photoreal")
    return {
        "lighting": {
            "key": "low" if look == "painterly" else "high",
            "temperature_k": 3200 + _seed(look) % 3000,
        }
    }


@_t
def t_colour_script(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    palette = (inp.get("style_guide") or {}).get("palette", ["#888888"])
    return {"colour_script": [{"scene": s["index"], "colour": palette[s["index"] % len(palette)]}
                              for s in inp.get("scenes", [])]}  # fmt: skip


@_t
def t_music_pick(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"score": {"library_track": f"track-{_seed(inp.get('themes')) % 900 + 100}"}}


@_t
def t_foley(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {
        "sound_palette": {"foley": ["footsteps", "door", "wind", "paper"][: 2 + _seed(inp.get("world")) % 3]}
    }


@_t
def t_ambience(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"ambience": {"bed": ["sea", "city", "forest", "rain"][_seed(inp.get("world")) % 4]}}


@_t
def t_audio_heuristics(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"score": 60.0 + _seed(inp.get("score")) % 30}


@_t
def t_shot_list(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    s = inp.get("scene", {})
    return {
        "shot_list": [
            {"shot": i + 1, "type": ["wide", "medium", "close"][i % 3]}
            for i in range(2 + s.get("index", 0) % 3)
        ]
    }


@_t
def t_camera_plan(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"camera_plan": [{"shot": s["shot"], "move": ["static", "dolly", "pan"][s["shot"] % 3]}
                            for s in inp.get("shot_list", [])]}  # fmt: skip


@_t
async def t_storyboard_frame(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    s = inp.get("scene", {})
    svg = _svg_card(160, 90, "#ddd", str(s.get("title", "")))
    return {
        "scene_image": {
            "result_url": await ctx.write_file(f"frame-{s.get('index', 0)}.svg", svg),
            "kind": "frame",
        }
    }


@_t
async def t_animatic(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    s = inp.get("scene", {})
    img = (inp.get("scene_image") or {}).get("result_url")
    doc = {"scene": s.get("index"), "frames": [{"image": img, "seconds": 2.0}] * 3, "fps": 24}
    return {"clip": {"result_url": await ctx.write_file(f"animatic-{s.get('index', 0)}.json", json.dumps(doc)),
                     "kind": "animatic"}}  # fmt: skip


@_t
def t_temp_track(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"dialogue_audio": {"kind": "temp", "lines": len((inp.get("dialogue") or {}).get("lines", []))}}


@_t
def t_continuity(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    s = inp.get("scene", {})
    known = {c.get("name") for c in inp.get("characters", [])}
    missing = [n for n in s.get("characters", []) if n not in known]
    return {"continuity": {"ok": not missing, "unknown_characters": missing}}


@_t
async def t_edit_list(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    scenes = sorted(inp.get("scenes_done", []), key=lambda s: s["index"])
    t = 0.0
    events = []
    for s in scenes:
        events.append(
            {"scene": s["index"], "clip": s.get("clip", {}).get("result_url"), "in": t, "out": t + 6.0}
        )
        t += 6.0
    url = await ctx.write_file(
        "edit_decision_list.json", json.dumps({"events": events, "duration": t}, indent=1)
    )
    return {"edit_decision_list": {"result_url": url, "events": len(events), "duration": t}}


@_t
def t_stem_sum(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"mix": {"kind": "stem-sum", "stems": len(inp.get("scenes_done", []))}}


@_t
def t_grade(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"grade": {"lut": "film-emulation", "scenes": len(inp.get("colour_script") or [])}}


@_t
async def t_subtitles(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    out, n = [], 1
    for s in sorted(inp.get("scenes_done", []), key=lambda s: s["index"]):
        for line in (s.get("dialogue") or {}).get("lines", [])[:2]:
            start = s["index"] * 6 + (n % 2) * 3
            out.append(f"{n}\n00:00:{start:02d},000 --> 00:00:{start + 2:02d},500\n{line}\n")
            n += 1
    url = await ctx.write_file("subtitles.srt", "\n".join(out) or "1\n00:00:00,000 --> 00:00:01,000\n...\n")
    return {"subtitles": {"result_url": url, "cues": n - 1}}


@_t
def t_vfx(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"vfx": {"shots": (inp.get("edit_decision_list") or {}).get("events", 0) // 2}}


@_t
def t_titles(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    c = inp.get("concept", {})
    return {
        "titles": {"main_title": c.get("title", "Untitled"), "credits": ["Produced by movie-orchestrator"]}
    }


@_t
def t_master(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"master": {"loudness_lufs": -23.0, "source": (inp.get("mix") or {}).get("kind", "mix")}}


REQUIRED_DELIVERABLES: tuple[str, ...] = ("concept", "story", "characters", "scene_images", "scene_clips", "edit_decision_list",
                         "mix", "subtitles", "titles")  # fmt: skip


@_t
def t_qc(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    d = inp.get("deliverables", {})
    missing = [k for k in REQUIRED_DELIVERABLES if not d.get(k)]
    return {"qc_report": {"passed": not missing, "missing": missing, "checked": list(REQUIRED_DELIVERABLES)}}


@_t
def t_trailer(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    return {"trailer": {"seconds": min(30.0, (inp.get("edit_decision_list") or {}).get("duration", 0) / 3)}}


@_t
async def t_package(inp: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    manifest = {"workflow_id": ctx.workflow_id, "deliverables": inp.get("deliverables", {})}
    return {
        "package": {
            "manifest_url": await ctx.write_file("manifest.json", json.dumps(manifest, indent=1, default=str))
        }
    }
