"""What the board shows of a production's deliverables: images, audio and files, each with a safe source."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from server.core import Deliverables

__all__ = ["Deliverable", "deliverables_view"]

_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
_AUDIO = (".wav", ".mp3", ".ogg", ".flac", ".m4a")
_TEXT_PREVIEW_BYTES = 20_000


class Deliverable:
    """One deliverable: what it is, where it is, and how the page shows it."""

    def __init__(self, label: str, ref: str, *, wid: str, folder: Path, api: str) -> None:
        self.label = label
        self.ref = ref
        name = Path(urlparse(ref).path).name
        self.name = name
        ext = Path(name).suffix.lower()
        self.kind = "image" if ext in _IMAGE else "audio" if ext in _AUDIO else "file"
        local = not urlparse(ref).scheme and Path(ref).parent == folder
        # Files of the workflow's own folder come through the board (with the key); outside URLs
        # (the Task Service's media) are linked as they are; other local paths are only named.
        self.src = f"{api}/w/{wid}/file/{name}" if local else ref if urlparse(ref).scheme else ""
        self.protected = local


def _walk(label: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        if value.startswith(("http://", "https://", "/")) and Path(urlparse(value).path).suffix:
            out.append((label, value))
    elif isinstance(value, dict):
        name = value.get("name") or value.get("title")
        for k, v in value.items():
            _walk(f"{label} · {name}" if name and k != "name" else f"{label} · {k}", v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            _walk(f"{label} {i}", v, out)


def deliverables_view(
    layout: Deliverables, project: str, wid: str, values: dict[str, Any], api: str
) -> dict[str, Any]:
    """The deliverables the state names and those in the workflow's folder, grouped for the page (reads
    files: call it in a thread)."""
    folder = layout.folder(project, wid)
    found: list[tuple[str, str]] = []
    _walk("", values.get("deliverables") or {}, found)
    _walk("", values.get("summary") or {}, found)  # e.g. the preview's keyframe
    unique = {ref: label for label, ref in reversed(found)}
    items = [
        Deliverable(label.strip(" ·"), ref, wid=wid, folder=folder, api=api) for ref, label in unique.items()
    ]
    named = {d.name for d in items}
    texts: dict[str, str] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.name not in named and layout.plain_name(f.name):
                items.append(Deliverable(f.stem.replace("_", " "), str(f), wid=wid, folder=folder, api=api))
            if f.suffix in {".srt", ".json"} and f.name in {"subtitles.srt", "manifest.json"}:
                texts[f.name] = f.read_text(errors="replace")[:_TEXT_PREVIEW_BYTES]
    return {
        "images": [d for d in items if d.kind == "image"],
        "audio": [d for d in items if d.kind == "audio"],
        "files": [d for d in items if d.kind == "file"],
        "subtitles": texts.get("subtitles.srt", ""),
        "manifest": texts.get("manifest.json", ""),
    }
