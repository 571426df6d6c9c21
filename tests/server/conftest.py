"""An orchestrator process in-process (engine, sandbox stand-ins) on the session's redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from server._runtime import Orchestrator
from server.settings import Settings


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result."""
    assert not result.is_error, result.content
    data: dict[str, Any] = result.structured_content
    return data


def error_text(result: Any) -> str:
    """The text of a tool error result."""
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    """Settings pointing at the session's Redis with this test's key prefix."""
    return Settings(
        redis_url=SecretStr(redis_url),
        key_prefix=key_prefix,
        data_dir=tmp_path / "redis",
        lease_seconds=2.0,
        task_poll_seconds=0.2,
        instance_id=f"test-{key_prefix}",
    )


@pytest.fixture
async def orch(settings: Settings) -> AsyncIterator[Orchestrator]:
    """A whole orchestrator with the sandbox stand-ins."""
    async with Orchestrator.open(settings, with_sandbox=True) as o:
        yield o


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[Orchestrator, str]]:
    """An orchestrator with its HTTP port (Streamable HTTP and /ws) on loopback and an admin key "tester"."""
    async with Orchestrator.open(settings, with_sandbox=True, http=("127.0.0.1", 0)) as o:
        assert o.keys is not None
        key, _ = await o.keys.create("tester", ["*"], "admin")
        yield o, key
