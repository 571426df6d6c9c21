"""Writer over an OpenAI-compatible chat-completions endpoint (OpenRouter, vLLM, Ollama, ...)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from adapters._cpu_gate import outside
from adapters._tasks import translate_http_error
from adapters.errors import RecoverableError

__all__ = ["LLMWriter"]

_SCHEMAS = {
    "concepts": '{"concepts": [{"title": str, "logline": str, "genre": str}]}',
    "world": '{"world": {"setting": str, "rules": [str]}}',
    "story": '{"story": {"title": str, "synopsis": str, "acts": [str], "characters": [{"name": str, "role": str, '
    '"personality": str, "appearance": str}], "revision": int}}',
    "revise": '{"story": {... same as story, revision increased}}',
    "dialogue": '{"dialogue": {"lines": [str]}}',
    "arc": '{"arc": {"start": str, "end": str, "beats": int}}',
    "costume": '{"costume": {"description": str}}',
    "props": '{"props": [str]}',
}


class LLMWriter:
    """Creative text from a chat-completions model, answered as JSON.

    Args:
        base_url: e.g. ``https://openrouter.ai/api/v1`` (``/chat/completions`` is appended).
        api_key: bearer key; never logged.
        model: model name.
    """

    service = "llm"

    def __init__(
        self, base_url: str, api_key: str, model: str, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.model = model
        self._http = http or httpx.AsyncClient(timeout=120)

    async def write(self, kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Ask the model for one piece of the production as JSON of the documented shape."""
        schema = _SCHEMAS.get(kind)
        if schema is None:
            msg = f"no prompt for {kind!r}"
            raise ValueError(msg)
        body = {
            "model": self.model,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "You are a film writers' room. Answer only with JSON of this shape: "
                 + schema},
                {"role": "user", "content": json.dumps({"task": kind, **inputs}, default=str)[:20000]},
            ],
        }  # fmt: skip
        try:
            async with outside():  # the run's CPU turn goes to another run while the model writes
                resp = await self._http.post(f"{self.base_url}/chat/completions", json=body,
                                             headers={"Authorization": f"Bearer {self._key}"})  # fmt: skip
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise translate_http_error(self.service, exc) from exc
        try:
            content = resp.json()["choices"][0]["message"]["content"]
            data = json.loads(content)
        except (KeyError, IndexError, ValueError) as exc:
            msg = f"the model's answer to {kind!r} is not the JSON asked for"
            raise RecoverableError(msg) from exc
        if not isinstance(data, dict):
            msg = f"the model's answer to {kind!r} is not a JSON object"
            raise RecoverableError(msg)
        return data
