"""The Brain's contract (docs/contracts/brain-service.md), against the stand-in or the real service.

What the deployed build (jomapps/mcp-brain-service @ d15715b) serves: the legacy envelope at ``/`` with two
tools, and nothing at ``/mcp``. Run against the real one with ``BRAIN_CONTRACT_URL=ws://host:port``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from adapters import LEGACY_TOOLS, BrainClient, CapabilityMissingError, PermanentError
from tests.contracts.conftest import Target


async def _ask(ws: ClientConnection, frame: str | dict[str, Any]) -> dict[str, Any]:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


def _character(project: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"tool": "create_character", "project_id": project, "name": name,
            "personality_description": f"{name} is a stubborn lighthouse keeper",
            "appearance_description": "tall, oilskin coat", **extra}  # fmt: skip


@pytest.mark.parametrize("path", ["/mcp", "/ws"])
async def test_only_the_root_path_takes_a_websocket(brain: Target, path: str) -> None:
    """The MCP path the platform documents (and any other) refuses the upgrade with 403; / accepts, no subprotocol."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(brain.url + path, subprotocols=["mcp"]):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 403
    async with connect(brain.url + "/", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None


async def test_frames_that_are_not_its_envelope_get_its_errors_and_the_socket_stays(brain: Target) -> None:
    """JSON-RPC, non-JSON, non-objects, unknown tools, missing fields: each an error reply; the socket stays open."""
    project = f"c-{uuid.uuid4().hex[:8]}"
    async with connect(brain.url + "/") as ws:
        rpc = await _ask(ws, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        not_json = await _ask(ws, "not json")
        array = await _ask(ws, "[1, 2]")
        knowledge = await _ask(ws, {"tool": "store_knowledge", "project_id": project, "content": "x"})
        missing = await _ask(ws, {"tool": "create_character", "project_id": project})
        wrong_type = await _ask(ws, _character(project, "x") | {"name": 123})
        still = await _ask(ws, _character(project, "Ivo"))
    assert rpc == {"status": "error", "message": "Missing 'tool' field in message"}
    assert not_json["message"].startswith("Invalid JSON format:")
    assert array["message"] == "Internal error: 'list' object has no attribute 'get'"
    assert knowledge == {"status": "error", "message": "Unknown tool: store_knowledge"}
    assert (
        missing["message"] == "Missing required fields: name, personality_description, appearance_description"
    )
    assert wrong_type["message"].startswith(
        "Failed to create character: 1 validation error for CharacterCreate"
    )
    assert still["status"] == "success"


async def test_create_character_takes_empty_texts_ignores_extra_keys_and_never_deduplicates(
    brain: Target,
) -> None:
    """Present is enough (empty strings pass), extra keys are ignored, the same name twice is two characters."""
    project = f"c-{uuid.uuid4().hex[:8]}"
    async with connect(brain.url + "/") as ws:
        empty = await _ask(
            ws, _character(project, "Ana") | {"personality_description": "", "appearance_description": ""}
        )
        extra = await _ask(ws, _character(project, "Ana", role="lead"))
    assert empty == {"status": "success", "message": "Character created successfully.",
                     "character_id": empty["character_id"]}  # fmt: skip
    assert extra["status"] == "success"
    assert empty["character_id"] != extra["character_id"]
    uuid.UUID(empty["character_id"])


async def test_find_similar_characters_ranks_the_project_only_at_most_ten(brain: Target) -> None:
    """Best first, scores in [0, 1], the character itself included, other projects' never; blank query: none."""
    project, other = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    async with connect(brain.url + "/") as ws:
        ids = [(await _ask(ws, _character(project, f"Keeper{i}")))["character_id"] for i in range(11)]
        await _ask(ws, _character(other, "Elsewhere"))
        found = await _ask(
            ws, {"tool": "find_similar_characters", "project_id": project, "query": "stubborn keeper"}
        )
        blank = await _ask(ws, {"tool": "find_similar_characters", "project_id": project, "query": "   "})
        nobody = await _ask(ws, {"tool": "find_similar_characters", "project_id": f"c-{uuid.uuid4().hex[:8]}",
                                 "query": "keeper"})  # fmt: skip
        # two frames sent back to back are answered in order (replies carry no id)
        await ws.send(json.dumps({"tool": "find_similar_characters", "project_id": other, "query": "x"}))
        await ws.send(json.dumps({"tool": "nope"}))
        first, second = json.loads(await ws.recv()), json.loads(await ws.recv())
    results = found["results"]
    assert len(results) == 10
    assert set(results[0]) == {"id", "name", "similarity_score"}
    assert {r["id"] for r in results} <= set(ids)
    scores = [r["similarity_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert blank == {"status": "success", "results": []}
    assert nobody == {"status": "success", "results": []}
    assert [r["name"] for r in first["results"]] == ["Elsewhere"]
    assert second["message"] == "Unknown tool: nope"


async def test_our_client_speaks_to_it_and_misses_the_knowledge_tools_clearly(brain: Target) -> None:
    """BrainClient (default dialect) falls back to the envelope, knows the two tools, and reads a missing tool
    as a missing capability (an alternative agent may do the work), a bad request as permanent."""
    project = f"c-{uuid.uuid4().hex[:8]}"
    client = BrainClient(brain.url)
    try:
        assert await client.tools() == list(LEGACY_TOOLS)
        cid = await client.create_character(
            project, "Mara", "a stubborn lighthouse keeper", "tall, oilskin coat"
        )
        found = await client.find_similar_characters(project, "stubborn keeper")
        with pytest.raises(CapabilityMissingError, match="Unknown tool: store_knowledge") as missing:
            await client.store_knowledge(project, "the synopsis")
        with pytest.raises(PermanentError, match="validation error"):
            await client.call("create_character", {**_character(project, "x"), "name": 123})
    finally:
        await client.aclose()
    assert client.dialect == "legacy"
    assert found[0]["id"] == cid
    assert (missing.value.service, missing.value.operation) == ("brain", "store_knowledge")
