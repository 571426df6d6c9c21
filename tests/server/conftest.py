"""Orchestrators under test, on the session's redis-server with the test's own key prefix.

One factory opens them all (`open_orch`): the stand-ins when given, the HTTP port on loopback (API keys
required), an engine unless asked not to, settings overridden by keyword. `orch`, `served` and
`front_door` are its common shapes; a module that needs another builds it with `open_orch` under a name
of its own (never another `orch`). `wait_status` is the one way a test waits for a workflow (get_status with wait_seconds and
until, never a poll loop of its own).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from adapters import TERMINAL
from server import Orchestrator, Sandbox, Settings


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result."""
    assert not result.is_error, result.content
    data: dict[str, Any] = result.structured_content
    return data


def error_text(result: Any) -> str:
    """The text of a tool error result."""
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


async def wait_status(
    client: Client,
    wid: str,
    until: Iterable[str] = ("completed", "failed", "cancelled"),
    *,
    where: Callable[[dict[str, Any]], bool] | None = None,
    limit: float = 60.0,
    **call: Any,
) -> dict[str, Any]:
    """The workflow's status once it reaches one of `until` (a finished workflow answers at once), or, with
    `where`, once `where(status)` holds.

    Built on ``get_status(wait_seconds, until)``: the server answers when the status is reached (with
    `where`: at each change, and the condition is checked then); the call is repeated only when one wait
    of at most 30 s ends first. `call` goes to ``call_tool`` (e.g. ``progress_callback``).

    Raises:
        TimeoutError: not reached within `limit` seconds (the last status is in the message).
    """
    wanted = list(until)
    deadline = time.monotonic() + limit
    st: dict[str, Any] = {}
    wait = 0.0 if where is not None else 30.0  # a condition is checked on the status as it is first
    while (left := deadline - time.monotonic()) > 0:
        args: dict[str, Any] = {"workflow_id": wid, "wait_seconds": min(wait, max(0.1, left))}
        if where is None:
            args["until"] = wanted
        st = structured(await client.call_tool("get_status", args, **call))
        if where(st) if where is not None else st["status"] in wanted:
            return st
        if where is None and st["status"] in TERMINAL:
            msg = f"workflow {wid} ended {st['status']} instead of reaching {wanted}: {st.get('last_error')}"
            raise AssertionError(msg)
        wait = 30.0
    msg = (
        f"workflow {wid} did not reach {'the condition' if where else wanted} within {limit:g} s; last: {st}"
    )
    raise TimeoutError(msg)


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
        sandbox_webhook_delay_seconds=WEBHOOK_DELAY,
    )


# The stand-ins keep the real services' defects in tests; the Task Service's ~6 s between a job's status and
# its webhook is compressed to this (the order, status first, is what matters).
WEBHOOK_DELAY = 0.1


@pytest.fixture
async def standins(settings: Settings) -> AsyncIterator[Sandbox]:
    """The stand-ins of the Task Service, the Brain and Auto-Movie, on loopback, for this test (defects on)."""
    async with Sandbox.running(settings.media_root, webhook_delay=WEBHOOK_DELAY) as sandbox:
        yield sandbox


class OpenOrchestrator:
    """Opens orchestrators for one test: on the session's Redis with the test's prefix (`settings`).

    Args (of a call):
        sandbox: point the outside services at these stand-ins.
        engine: run workflows in it (False: they stay where the test puts them).
        http: serve its HTTP port on loopback; the stand-ins' webhooks need it.
        auth: require API keys on it (False: loopback development).
        tls: serve it over TLS (``ssl_certfile``, ``ssl_keyfile``).
        base: the settings to start from (default: the test's).
        overrides: settings to change, by name.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(
        self,
        *,
        sandbox: Sandbox | None = None,
        engine: bool = True,
        http: bool = True,
        auth: bool = True,
        tls: dict[str, str] | None = None,
        base: Settings | None = None,
        **overrides: Any,
    ) -> contextlib.AbstractAsyncContextManager[Orchestrator]:
        chosen = (base or self._settings).model_copy(update=overrides)
        if sandbox is not None:
            chosen = sandbox.settings(chosen)
        bind = ("127.0.0.1", 0) if http else None
        return Orchestrator.open(chosen, with_engine=engine, http=bind, auth=auth, tls=tls)


@pytest.fixture
def open_orch(settings: Settings) -> OpenOrchestrator:
    """The one way a test opens an orchestrator (see `OpenOrchestrator`)."""
    return OpenOrchestrator(settings)


@pytest.fixture
async def orch(open_orch: OpenOrchestrator, standins: Sandbox) -> AsyncIterator[Orchestrator]:
    """A whole orchestrator (engine, HTTP port) pointed at the stand-ins."""
    async with open_orch(sandbox=standins) as o:
        yield o


@pytest.fixture
async def front_door(open_orch: OpenOrchestrator) -> AsyncIterator[Orchestrator]:
    """An orchestrator serving MCP on its HTTP port (keys required) that runs no workflows: they stay where
    the test puts them."""
    async with open_orch(engine=False) as o:
        yield o


@pytest.fixture
async def served(orch: Orchestrator) -> tuple[Orchestrator, str]:
    """`orch` and an admin key named "tester" for its HTTP port and /ws."""
    key, _ = await orch.keys.create("tester", ["*"], "admin")
    return orch, key
