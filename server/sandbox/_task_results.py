"""What the Task Service stand-in's jobs produce: the real build's result of each task type, field for field.

Shapes, defaults and failure messages are those of jomapps/celery-redis @ 56b07f3 (docs/contracts/task-service.md);
the media are small real files instead of its placeholder URLs.
"""

from __future__ import annotations

import hashlib
import math
import traceback
from pathlib import Path
from typing import Any

from server.sandbox._media import write_json, write_png, write_wav

__all__ = ["JobFailure", "evaluation", "media_result", "traceback_of"]

# The real build's video task raises this before it does anything (video_tasks.py:40).
VIDEO_DEFECT = "'Context' object has no attribute 'started_at'"


class JobFailure(Exception):
    """A job of the stand-in failed; the message is what the real build's webhook says."""


def traceback_of(exc: BaseException) -> str:
    """A traceback as the real webhook carries it (its first 2000 characters)."""
    return "".join(traceback.format_exception(exc))[:2000]


def _files(media_dir: Path, public_url: str, task: dict[str, Any]) -> tuple[Path, str]:
    folder = media_dir / task["project_id"]
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"{public_url}/media/{task['project_id']}"


def media_result(
    media_dir: Path, public_url: str, task: dict[str, Any], *, video_fails: bool
) -> dict[str, Any]:
    """The result of an image, audio or video job (the real build's fields), its file written under `media_dir`.

    Raises:
        JobFailure: a video job while the real build's defect is mirrored.
    """
    tid, ttype, data = task["task_id"], task["task_type"], task["task_data"]
    base = {"task_id": tid, "project_id": task["project_id"]}
    if ttype == "generate_video" and video_fails:
        raise JobFailure(VIDEO_DEFECT)
    folder, url = _files(media_dir, public_url, task)
    if ttype == "generate_image":
        p = dict(data.get("image_params") or {})
        path = write_png(folder / f"{tid}.png", str(data.get("prompt", "")))
        write_png(folder / f"{tid}_thumb.png", str(data.get("prompt", "")), width=16, height=9)
        return {**base, "image_url": f"{url}/{path.name}", "thumbnail_url": f"{url}/{tid}_thumb.png",
                "prompt": data.get("prompt", ""), "width": p.get("width", 1024), "height": p.get("height", 1024),
                "format": "png", "size_bytes": path.stat().st_size, "generation_time": 15, "status": "completed",
                "quality_score": 0.94, "similar_images_used": 0,
                "generation_metadata": {"model_version": "image-gen-v3.0", "style": p.get("style", "photorealistic"),
                                        "guidance_scale": p.get("guidance_scale", 7.5), "steps": p.get("steps", 50)}}  # fmt: skip
    if ttype == "process_audio":
        p = dict(data.get("audio_params") or {})
        duration = p.get("duration", 30)
        seconds = min(2.0, float(duration)) if isinstance(duration, int | float) else 0.5
        path = write_wav(folder / f"{tid}.wav", str(data.get("prompt", "")), seconds=max(0.1, seconds))
        return {**base, "audio_url": f"{url}/{path.name}", "preview_url": f"{url}/{path.name}",
                "prompt": data.get("prompt", ""), "duration": duration, "sample_rate": p.get("sample_rate", 44100),
                "format": "wav", "size_bytes": path.stat().st_size, "generation_time": 25, "status": "completed",
                "quality_score": 0.87, "similar_audio_used": 0,
                "generation_metadata": {"model_version": "audio-gen-v2.5", "style": p.get("style", "music"),
                                        "tempo": p.get("tempo", 120), "key": p.get("key", "C major"),
                                        "instruments": p.get("instruments", [])}}  # fmt: skip
    scene, p = dict(data.get("scene_data") or {}), dict(data.get("video_params") or {})
    path = write_json(
        folder / f"{tid}.json", {"scene": scene, "fps": p.get("fps", 24), "duration": p.get("duration", 30)}
    )
    return {**base, "scene_id": scene.get("scene_id"), "video_url": f"{url}/{path.name}", "thumbnail_url": None,
            "duration": p.get("duration", 30), "resolution": p.get("resolution", "1920x1080"), "fps": p.get("fps", 24),
            "format": "json", "size_bytes": path.stat().st_size, "generation_time": 45, "status": "completed",
            "quality_score": 0.91, "similar_videos_used": 0, "processing_metadata": {"model_version": "video-gen-v1.0"}}  # fmt: skip


def evaluation(data: dict[str, Any]) -> dict[str, Any]:
    """An ``evaluate_department`` result as the real build's mock evaluator gives it.

    Its rating ignores the content: 75 + a hash of the department % 20 (the real build uses Python's
    per-process string hash; this one is stable). No content at all rates 0.

    Raises:
        JobFailure: ``gather_data`` is not a list of objects (the real task calls ``.get`` on each item).
    """
    slug, gather = data.get("department_slug"), data.get("gather_data", [])
    items = list(gather) if isinstance(gather, list | dict | str) else []
    for item in items:
        if not isinstance(item, dict):
            msg = f"'{type(item).__name__}' object has no attribute 'get'"
            raise JobFailure(msg)
    if not isinstance(slug, str):
        return _verdict("unknown", 50, data, "Evaluation fallback: no department given.", [], [], 0)
    if not items:
        return _verdict(slug, 0, data, f"Insufficient data provided for {slug} evaluation. No content available to assess.",
                        ["No gather data provided", "Cannot assess department readiness without content",
                         "Minimum content requirements not met"],
                        [f"Gather content for {slug} department", "Ensure all required fields are populated",
                         "Provide at least 2-3 content items for evaluation"], 0)  # fmt: skip
    rating = 75 + hashlib.sha256(slug.encode()).digest()[0] % 20
    return _verdict(slug, rating, data, f"The {slug} department shows strong foundational work with clear direction.",
                    [f"{slug.capitalize()} documentation needs more detail in technical specifications"],
                    [f"Add detailed technical specifications for {slug} deliverables"], 1)  # fmt: skip


def _verdict(
    slug: str,
    rating: int,
    data: dict[str, Any],
    summary: str,
    issues: list[str],
    suggestions: list[str],
    n: int,
) -> dict[str, Any]:
    threshold = data.get("threshold", 80)
    passed = isinstance(threshold, int | float) and not math.isnan(threshold) and rating >= threshold
    return {"department": slug, "rating": rating, "evaluation_result": "pass" if passed else "fail",
            "evaluation_summary": summary, "issues": issues, "suggestions": suggestions, "iteration_count": n,
            "processing_time": 0.0 if n == 0 else 6.0,
            "metadata": {"model": "mock-evaluator-v1" if n else "validation", "tokens_used": 1500 if n else 0,
                         "confidence_score": 0.85 if n else 1.0}}  # fmt: skip
