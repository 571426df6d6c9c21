"""The CPU gate in a real server process: a run waiting on an outside job holds no turn."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.server.test_processes import Services, call, server, services, until

pytestmark = pytest.mark.slow

__all__ = ["services"]  # the fixture, imported to be used here


@pytest.mark.parametrize("services", [15.0], indirect=True)
async def test_with_one_turn_a_run_waiting_on_a_job_lets_another_run_compute(
    services: Services, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """WORKER_CPU_TURNS=1 and outside jobs that take 15 s: while a preview waits on its job, a
    diagnostic workflow started after it runs to completion; had the waiting run kept its turn, the
    diagnostic could not start before that job ends."""
    env = {**services.env, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "WORKER_CPU_TURNS": "1"}
    async with server("solo", env, tmp_path) as s:
        preview = (await call(s.url, "start_workflow", {"project_id": "p", "workflow": "preview"}))[
            "workflow_id"
        ]
        with anyio.fail_after(60):
            while not any(t["status"] == "processing" for t in services.tasks.tasks.values()):
                await anyio.sleep(0.05)
        other = (await call(s.url, "start_workflow", {"project_id": "p", "workflow": "diagnostic_linear"}))[
            "workflow_id"
        ]
        done = await until(s.url, other, lambda st: st["status"] in {"failed", "completed"}, limit=10)
        assert done["status"] == "completed", done["last_error"]
        # the preview's job is still being worked on: it waited outside without its turn
        assert [t for t in services.tasks.tasks.values() if t["status"] == "processing"]
        st = await call(s.url, "get_status", {"workflow_id": preview})
        assert st["status"] == "running"
