"""The writer port (creative text) and its deterministic local implementation.

In production the writer is an OpenAI-compatible chat endpoint (adapters.LLMWriter). The local
writer produces structured, brief-dependent text with no model at all; the sandbox, the demo and
the graph tests use it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

__all__ = ["LocalWriter", "WriterPort"]

_NAMES = ["Mara", "Tobin", "Ilse", "Quentin", "Ada", "Rafe", "Noor", "Elias", "June", "Oskar", "Pia", "Sol"]
_TRAITS = [
    "stubborn but kind",
    "quietly brilliant",
    "reckless and loyal",
    "wry and guarded",
    "hopeful",
    "haunted",
]
_LOOKS = ["oilskin coat and salt-white hair", "ink-stained fingers", "a red scarf", "round spectacles",
          "a patched sailor's jacket", "boots too big for them"]  # fmt: skip


class WriterPort(Protocol):
    """Creative text as structured JSON."""

    async def write(self, kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Write one piece (`kind`: concepts, world, story, revise, dialogue, arc, costume, props)."""
        ...


def _h(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8], 16)


class LocalWriter:
    """Deterministic writer: the same inputs give the same text; different briefs give different text."""

    async def write(self, kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """See `WriterPort.write`."""
        brief = str(inputs.get("brief") or (inputs.get("concept") or {}).get("logline") or "a story")
        seed = _h(kind, brief, inputs.get("round", 0), inputs.get("revision", 0))
        if kind == "concepts":
            n = int(inputs.get("count", 3))
            genre = (inputs.get("project") or {}).get("genre", "drama")
            tones = ["bittersweet", "eerie", "playful", "epic", "intimate"]
            return {"concepts": [
                {"title": f"{_NAMES[(seed + i) % 12]}'s {['Map', 'Light', 'Tide', 'Letter', 'Door'][(seed + i) % 5]}",
                 "logline": f"{brief.rstrip('.')} — a {tones[(seed + i) % 5]} {genre} "
                            f"(take {inputs.get('round', 0) + 1}.{i + 1}).",
                 "genre": genre}
                for i in range(n)]}  # fmt: skip
        if kind == "world":
            return {"world": {"setting": ["a storm coast", "a vertical city", "a drowned valley"][seed % 3],
                              "rules": ["maps change at night", "nobody lies after dark"][: 1 + seed % 2]}}  # fmt: skip
        if kind in {"story", "revise"}:
            revision = int(inputs.get("revision", 0)) + (1 if kind == "revise" else 0)
            cast = [
                {"name": _NAMES[(seed + i) % 12], "role": "lead" if i == 0 else "supporting",
                 "personality": _TRAITS[(seed + i) % 6], "appearance": _LOOKS[(seed + 2 * i) % 6]}
                for i in range(4)
            ]  # fmt: skip
            acts = ["setup", "rising action", "crisis", "resolution"][: 3 + (revision % 2)]
            return {"story": {"title": (inputs.get("concept") or {}).get("title", "Untitled"),
                              "synopsis": f"{brief} The {acts[-1]} turns on a choice only {cast[0]['name']} can make.",
                              "acts": acts, "characters": cast, "revision": revision}}  # fmt: skip
        if kind == "dialogue":
            scene = inputs.get("scene") or {}
            who = scene.get("characters") or ["Someone"]
            return {"dialogue": {"lines": [f"{who[i % len(who)]}: line {i + 1} of {scene.get('title', 'the scene')}."
                                           for i in range(3)]}}  # fmt: skip
        if kind == "arc":
            c = inputs.get("character") or {}
            return {"arc": {"start": c.get("personality", "unsure"), "end": "changed", "beats": 3}}
        if kind == "costume":
            return {
                "costume": {"description": (inputs.get("character") or {}).get("appearance", "plain clothes")}
            }
        if kind == "props":
            return {"props": ["a brass compass", "a folded chart", "a lantern"][: 1 + seed % 3]}
        msg = f"the local writer cannot write {kind!r}"
        raise ValueError(msg)
