"""STAND-IN for the platform's Brain service (jomapps/mcp-brain-service @ d15715b), for the demo and tests.

As the deployed build (docs/contracts/brain-service.md): its WebSocket at ``/`` speaks the legacy envelope
(no subprotocol, no auth, one JSON object per frame keyed by ``"tool"``, one reply per request without an
id, the socket kept open after errors) with exactly its two tools, `create_character` and
`find_similar_characters`, and its answers and error messages; any other WebSocket path (``/mcp``,
``/ws``) refuses the upgrade with 403. Similarity is real and local (a hashing vectoriser, cosine
similarity: 0.7 personality + 0.3 appearance, as there).

`mcp_dialect` adds what only the platform's documentation describes (no build serves it): MCP over
WebSocket at ``/mcp`` (subprotocol ``mcp``, ``Authorization: Bearer <key>``) with the knowledge tools
store_knowledge, get_knowledge, store_embedding, search_embeddings besides the two. Chaos switches
(sandbox only): `drop_next` closes the socket under a call, `embedding_outage` answers the build's
transient ``Failed to ...: Jina embedding failed`` error.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters import LEGACY_TOOLS
from server.web import serve_mcp_websocket

__all__ = ["BrainStandIn", "embed"]

_DIM = 512
_WORD = re.compile(r"[a-z0-9']+")


def embed(text: str) -> list[float]:
    """A unit vector of hashed word and word-pair counts (no model download)."""
    words = _WORD.findall(text.lower())
    feats = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    vec = [0.0] * _DIM
    for f in feats:
        h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=4).digest(), "big")
        vec[h % _DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _cosine(a: list[float], b: list[float]) -> float:
    return max(0.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True))))


_REQUIRED: dict[str, tuple[str, ...]] = {
    "create_character": ("project_id", "name", "personality_description", "appearance_description"),
    "find_similar_characters": ("project_id", "query"),
    "store_knowledge": ("project_id", "content"),
    "get_knowledge": ("project_id",),
    "store_embedding": ("project_id", "text"),
    "search_embeddings": ("project_id", "query"),
}


def _on_the_loop(fn: Callable[..., dict[str, Any]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The operation as a coroutine: the SDK runs a sync tool in a worker thread (40 at most), where
    concurrent calls queue, contend for the GIL and race on the stand-in's dicts; these are quick."""

    @functools.wraps(fn)
    async def tool(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return fn(*args, **kwargs)

    return tool


@dataclass
class BrainStandIn:
    """The Brain stand-in: state, the MCP server, the legacy handler, and a Starlette app."""

    api_key: str = "sandbox-brain-key"
    knowledge: dict[str, dict[str, Any]] = field(default_factory=dict)
    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)
    characters: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    drop_next: int = 0
    embedding_outage: bool = False
    mcp_dialect: bool = False

    # -- operations (shared by both dialects) -------------------------------------------------

    def _count(self, tool: str) -> None:
        self.calls[tool] = self.calls.get(tool, 0) + 1

    def store_knowledge(
        self, project_id: str, content: str, type: str = "note", properties: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a knowledge node."""
        self._count("store_knowledge")
        node_id = str(uuid.uuid4())
        self.knowledge[node_id] = {
            "id": node_id, "project_id": project_id, "type": type, "content": content,
            "properties": properties or {}, "vector": embed(content),
        }  # fmt: skip
        return {"status": "success", "node_id": node_id}

    def get_knowledge(self, project_id: str, node_id: str = "", type: str = "") -> dict[str, Any]:
        """One node by id, or every node of a type in the project."""
        self._count("get_knowledge")
        nodes = [
            {k: v for k, v in n.items() if k != "vector"}
            for n in self.knowledge.values()
            if n["project_id"] == project_id
            and (not node_id or n["id"] == node_id)
            and (not type or n["type"] == type)
        ]
        return {"status": "success", "nodes": nodes}

    def store_embedding(
        self, project_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a text with its embedding."""
        self._count("store_embedding")
        eid = str(uuid.uuid4())
        self.embeddings[eid] = {
            "id": eid,
            "project_id": project_id,
            "text": text,
            "metadata": metadata or {},
            "vector": embed(text),
        }
        return {"status": "success", "embedding_id": eid}

    def search_embeddings(
        self, project_id: str, query: str, top_k: int = 10, threshold: float = 0.0
    ) -> dict[str, Any]:
        """Stored texts and knowledge of the project most similar to the query."""
        self._count("search_embeddings")
        q = embed(query)
        pool = [
            *self.embeddings.values(),
            *({**n, "text": n["content"]} for n in self.knowledge.values()),
        ]
        scored = [
            {"id": e["id"], "text": e["text"], "score": round(_cosine(q, e["vector"]), 4),
             "metadata": e.get("metadata") or e.get("properties") or {}}
            for e in pool if e["project_id"] == project_id
        ]  # fmt: skip
        scored = [s for s in scored if s["score"] >= threshold]
        scored.sort(key=lambda s: s["score"], reverse=True)
        return {"status": "success", "results": scored[: max(1, min(top_k, 50))], "total_count": len(scored)}

    def create_character(
        self, project_id: str, name: str, personality_description: str, appearance_description: str
    ) -> dict[str, Any]:
        """Create a character; its personality and appearance are indexed for similarity."""
        self._count("create_character")
        cid = str(uuid.uuid4())
        self.characters[cid] = {
            "id": cid, "project_id": project_id, "name": name,
            "personality_description": personality_description, "appearance_description": appearance_description,
            "personality": embed(personality_description), "appearance": embed(appearance_description),
        }  # fmt: skip
        return {"status": "success", "message": "Character created successfully.", "character_id": cid}

    def find_similar_characters(self, project_id: str, query: str) -> dict[str, Any]:
        """At most 10 characters of the project, best first (the build's weighting, unrounded)."""
        self._count("find_similar_characters")
        if not query.strip():
            return {"status": "success", "results": []}
        q = embed(query)
        res = [
            {"id": c["id"], "name": c["name"],
             "similarity_score": 0.7 * _cosine(q, c["personality"]) + 0.3 * _cosine(q, c["appearance"])}
            for c in self.characters.values() if c["project_id"] == project_id
        ]  # fmt: skip
        res.sort(key=lambda r: r["similarity_score"], reverse=True)
        return {"status": "success", "results": res[:10]}

    # -- MCP dialect --------------------------------------------------------------------------

    def mcp_server(self) -> MCPServer:
        """The MCP server exposing the six tools."""
        mcp = MCPServer(name="brain (sandbox stand-in)")
        for fn in (
            self.store_knowledge,
            self.get_knowledge,
            self.store_embedding,
            self.search_embeddings,
            self.create_character,
            self.find_similar_characters,
        ):
            mcp.tool(name=fn.__name__, description=fn.__doc__ or "")(_on_the_loop(fn))
        return mcp

    # -- legacy dialect -----------------------------------------------------------------------

    def legacy(self, raw: str) -> dict[str, Any]:
        """Answer one legacy envelope frame as the deployed build does."""
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError as exc:
            return {"status": "error", "message": f"Invalid JSON format: {exc}"}
        if not isinstance(msg, dict):
            return {
                "status": "error",
                "message": f"Internal error: '{type(msg).__name__}' object has no attribute 'get'",
            }
        tool = msg.get("tool")
        if not tool:
            return {"status": "error", "message": "Missing 'tool' field in message"}
        if tool not in LEGACY_TOOLS:
            return {"status": "error", "message": f"Unknown tool: {tool}"}
        missing = [k for k in _REQUIRED[tool] if k not in msg]  # present is enough: "" is accepted
        if missing:
            return {"status": "error", "message": f"Missing required fields: {', '.join(missing)}"}
        args = {k: msg[k] for k in _REQUIRED[tool]}  # other keys are ignored
        failing = (
            "Failed to create character"
            if tool == "create_character"
            else "Failed to find similar characters"
        )
        wrong = [k for k, v in args.items() if not isinstance(v, str)]
        if wrong:
            model = "CharacterCreate" if tool == "create_character" else "CharacterSearch"
            shown = "\n".join(f"{k}\n  Input should be a valid string [type=string_type, input_value={args[k]!r}, "
                               f"input_type={type(args[k]).__name__}]" for k in wrong)  # fmt: skip
            return {
                "status": "error",
                "message": f"{failing}: {len(wrong)} validation error for {model}\n{shown}",
            }
        if self.embedding_outage:
            return {
                "status": "error",
                "message": f"{failing}: Jina embedding failed: 503 Service Unavailable",
            }
        result: dict[str, Any] = getattr(self, tool)(**args)
        return result

    # -- app ----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """Starlette app: ``/`` (legacy envelope), ``/health``, and ``/mcp`` (MCP) with `mcp_dialect`."""
        mcp = self.mcp_server()

        async def authorize(ws: WebSocket) -> str | None:
            header = ws.headers.get("authorization", "")
            return "ok" if header == f"Bearer {self.api_key}" else None

        def drop_call(raw: str) -> bool:
            if self.drop_next and '"tools/call"' in raw:
                self.drop_next -= 1
                return True
            return False

        async def mcp_endpoint(ws: WebSocket) -> None:
            await serve_mcp_websocket(ws, mcp, authorize=authorize, drop_frame=drop_call)

        async def legacy_endpoint(ws: WebSocket) -> None:
            await ws.accept()
            try:
                while True:
                    raw = await ws.receive_text()
                    if self.drop_next:
                        self.drop_next -= 1
                        await ws.close(code=1011)
                        return
                    await ws.send_text(json.dumps(self.legacy(raw)))
            except WebSocketDisconnect:
                return

        async def health(_: Request) -> Response:
            now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            return JSONResponse({"status": "healthy", "service": "MCP Brain Service", "version": "1.0.0",
                                 "timestamp": now, "components": {"neo4j": {"status": "healthy", "uri": "in-memory"},
                                                                  "jina": {"status": "healthy", "model": "hashing"}}})  # fmt: skip

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/api/v1/health", health),
                *([WebSocketRoute("/mcp", mcp_endpoint)] if self.mcp_dialect else []),
                WebSocketRoute("/", legacy_endpoint),
            ]
        )
