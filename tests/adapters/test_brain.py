"""The Brain adapter against the Brain stand-in over real WebSockets, in both dialects (the documented MCP one
served by the stand-in's `mcp_dialect` option; the deployed build has only the legacy one: tests/contracts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters import (
    BrainClient,
    CapabilityMissingError,
    PermanentError,
    RetryPolicy,
    ServiceGuard,
    SharedBreakers,
    TransientError,
)
from server.sandbox import BrainStandIn, serve_app


@pytest.fixture
async def brain() -> AsyncIterator[tuple[BrainStandIn, str]]:
    """The stand-in (with the documented MCP dialect too) on a loopback port; yields it and its ws:// base URL."""
    stand_in = BrainStandIn(mcp_dialect=True)
    async with serve_app(stand_in.app()) as url:
        yield stand_in, url.replace("http://", "ws://")


@pytest.mark.parametrize("dialect", ["mcp", "legacy"])
async def test_characters_round_trip_with_real_similarity(
    brain: tuple[BrainStandIn, str], dialect: str
) -> None:
    """create_character then find_similar_characters ranks the matching character first, scores in [0, 1]."""
    stand_in, url = brain
    client = BrainClient(url, api_key=stand_in.api_key, dialect=dialect)
    try:
        wizard = await client.create_character("p1", "Gandalf", "a wise old wizard", "grey robes, long beard")
        await client.create_character("p1", "Bilbo", "a cautious hobbit who loves home", "short, curly hair")
        await client.create_character("p2", "Elsewhere", "a wise old wizard", "grey robes")
        found = await client.find_similar_characters("p1", "wise old wizard with a beard")
        assert found[0]["id"] == wizard
        assert {f["name"] for f in found} == {"Gandalf", "Bilbo"}
        assert all(0.0 <= f["similarity_score"] <= 1.0 for f in found)
        assert found[0]["similarity_score"] > found[1]["similarity_score"]
    finally:
        await client.aclose()


async def test_mcp_dialect_discovers_tools_with_tools_list(brain: tuple[BrainStandIn, str]) -> None:
    """The MCP dialect learns the Brain's tools from tools/list and refuses unknown ones before calling."""
    stand_in, url = brain
    client = BrainClient(url, api_key=stand_in.api_key)
    try:
        tools = await client.tools()
        assert {"store_knowledge", "get_knowledge", "store_embedding", "search_embeddings",
                "create_character", "find_similar_characters"} <= set(tools)  # fmt: skip
        with pytest.raises(CapabilityMissingError, match="offers no tool"):
            await client.call("summon_dragon", {})
    finally:
        await client.aclose()


async def test_mcp_dialect_requires_the_bearer_key(brain: tuple[BrainStandIn, str]) -> None:
    """A wrong key is refused at the upgrade; the error says so and is not retried as transient."""
    _, url = brain
    client = BrainClient(url, api_key="wrong", dialect="mcp", call_timeout=3)
    try:
        with pytest.raises((PermanentError, TransientError)):
            await client.tools()
    finally:
        await client.aclose()


@pytest.mark.parametrize("dialect", ["mcp", "legacy"])
async def test_socket_dropped_mid_call_is_transient_and_the_retry_reconnects(
    brain: tuple[BrainStandIn, str], dialect: str
) -> None:
    """The Brain closes the socket mid-call: the call fails transient, the guard retries on a new socket."""
    stand_in, url = brain
    client = BrainClient(url, api_key=stand_in.api_key, dialect=dialect, call_timeout=5)
    guard = ServiceGuard("brain", SharedBreakers(None), retry=RetryPolicy(max_attempts=3, base=0.01))
    try:
        await client.create_character("p1", "Mara", "a cartographer haunting the lighthouse", "grey coat")
        stand_in.drop_next = 1
        with pytest.raises(TransientError):
            await client.find_similar_characters("p1", "lighthouse")
        stand_in.drop_next = 1
        results = await guard.call(lambda: client.find_similar_characters("p1", "haunted lighthouse"))
        assert results[0]["name"] == "Mara"
        assert 0 < results[0]["similarity_score"] <= 1
        assert client.reconnects >= 2
    finally:
        await client.aclose()


async def test_the_brains_own_embedding_failure_is_transient(brain: tuple[BrainStandIn, str]) -> None:
    """ "Failed to create character: Jina embedding failed ..." is an outage of its embedder: retried, not permanent."""
    stand_in, url = brain
    client = BrainClient(url, dialect="legacy", legacy_sockets=1)
    guard = ServiceGuard("brain", SharedBreakers(None), retry=RetryPolicy(max_attempts=2, base=0.01))
    try:
        stand_in.embedding_outage = True
        with pytest.raises(TransientError, match="Jina embedding failed") as info:
            await guard.call(lambda: client.create_character("p", "Ana", "brave", "tall"))
        assert info.value.reason.startswith("Failed to create character: Jina embedding failed")
        assert stand_in.calls.get("create_character", 0) == 0
        stand_in.embedding_outage = False
        assert await guard.call(lambda: client.create_character("p", "Ana", "brave", "tall"))
    finally:
        await client.aclose()


async def test_legacy_errors_are_permanent_and_keep_the_socket(brain: tuple[BrainStandIn, str]) -> None:
    """The legacy build's error envelope becomes PermanentError with its message, and "Unknown tool" a missing
    capability, remembered (the next call does not ask again); the socket stays usable."""
    _, url = brain
    client = BrainClient(url, dialect="legacy", legacy_sockets=1)
    try:
        with pytest.raises(PermanentError, match="Missing required fields: name"):
            await client.call(
                "create_character",
                {"project_id": "p", "personality_description": "x", "appearance_description": "y"},
            )
        with pytest.raises(CapabilityMissingError, match="Unknown tool: fly"):
            await client.call("fly", {})
        for _ in range(2):
            with pytest.raises(CapabilityMissingError, match="Unknown tool: store_knowledge"):
                await client.store_knowledge("p", "a synopsis")
        assert await client.tools() == ["create_character", "find_similar_characters"]
        assert client.reconnects == 1
        assert await client.create_character("p", "Ana", "brave", "tall")
        assert client.reconnects == 1
    finally:
        await client.aclose()


def test_unknown_dialect_is_refused() -> None:
    """BRAIN_DIALECT must be auto, mcp or legacy."""
    with pytest.raises(ValueError, match="BRAIN_DIALECT"):
        BrainClient("ws://x", dialect="grpc")


async def test_auto_dialect_speaks_mcp_where_it_is_served_and_the_envelope_where_not() -> None:
    """auto: MCP at /mcp when the Brain serves it; on a 403 upgrade (the deployed build), the legacy envelope,
    for calls that were waiting on the first connection too."""
    for mcp_dialect, expected in ((True, "auto"), (False, "legacy")):
        stand_in = BrainStandIn(mcp_dialect=mcp_dialect)
        async with serve_app(stand_in.app()) as url:
            client = BrainClient(url.replace("http://", "ws://"), api_key=stand_in.api_key)
            try:  # many calls at once, as a production's characters make them: every one lands
                ids = await asyncio.gather(
                    *(client.create_character("p", f"A{i}", "brave", "tall") for i in range(8))
                )
            finally:
                await client.aclose()
        assert len(set(ids)) == 8
        assert client.dialect == expected
