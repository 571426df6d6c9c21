"""The official MCP conformance suite (@modelcontextprotocol/conformance) against our HTTP port.

`make conformance` installs the pinned npm package into .conformance/ (once; offline afterwards) and runs
this test. Without the package the test is skipped, unless REQUIRE_CONFORMANCE=1 (CI) makes it fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.server.conftest import OpenOrchestrator

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".conformance" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
HERE = ROOT / "tests" / "conformance"


def _missing() -> str:
    if shutil.which("node") is None:
        return "node is not installed"
    if not CLI.exists():
        return "the conformance package is not installed: run `make conformance`"
    return ""


async def test_official_conformance_suite(open_orch: OpenOrchestrator, tmp_path: Path) -> None:
    """Every applicable scenario of the active suite passes, logging-set-level included."""
    missing = _missing()
    if missing:
        if os.environ.get("REQUIRE_CONFORMANCE"):
            pytest.fail(missing)
        pytest.skip(missing)
    async with open_orch(engine=False, auth=False) as orch:
        proc = await asyncio.create_subprocess_exec(
            "node", "--import", str(HERE / "register.mjs"), str(CLI), "server", "--url", f"{orch.http_url}/mcp",
            "--expected-failures", str(HERE / "baseline.yml"),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))
    assert proc.returncode == 0, text[-4000:]
    for scenario in ("server-initialize", "logging-set-level", "ping", "completion-complete", "tools-list",
                     "resources-list", "resources-subscribe", "prompts-list", "dns-rebinding-protection",
                     "server-sse-multiple-streams"):  # fmt: skip
        assert re.search(rf"✓ {scenario}: [1-9]\d* passed, 0 failed", text), scenario
