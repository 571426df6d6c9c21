"""The production board in a real browser: Debian's Chromium, headless, driven by Playwright.

Screenshots go to ``test-artifacts/board/`` (ignored by git). Without /usr/bin/chromium the tests are
skipped, unless REQUIRE_BROWSER is set (``.ci/run`` installs Chromium and sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.async_api import Browser, Page, async_playwright, expect

from adapters import KeyStore, open_redis
from server import Caller, Orchestrator
from server.mcp import APP_URI
from tests.server.conftest import structured

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "board"
# Playwright's own browser download is not used: the distribution's Chromium, a fresh profile, no
# network chatter of its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip

pytestmark = pytest.mark.slow

if not CHROMIUM.exists():
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail("REQUIRE_BROWSER is set but /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium; Playwright gives every launch a fresh temporary profile."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        await browser.close()


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _open(browser: Browser, url: str, key: str) -> Page:
    """A fresh tab (its own session storage) with the key typed into the form and Enter pressed."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#key")).to_be_focused()
    await page.keyboard.type(key)
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_be_visible()
    return page


async def _tab_to(page: Page, selector: str, limit: int = 120) -> bool:
    """Press Tab until the focused element matches `selector`."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(
            "(s) => document.activeElement && document.activeElement.matches(s)", selector
        ):
            return True
    return False


async def test_a_producer_follows_a_production_to_the_end_and_answers_on_the_page(
    orch: Orchestrator, browser: Browser
) -> None:
    """The page shows a production appear and progress without reloading; a read key sees the
    decision without answer buttons; another project's key sees nothing; pause asks for
    confirmation; the decide key answers by keyboard and by click; the deliverables are listed."""
    assert orch.keys is not None
    decide = (await orch.keys.create("producer", ["proj-a"], "decide"))[0]
    read = (await orch.keys.create("viewer", ["proj-a"], "read"))[0]
    other = (await orch.keys.create("outsider", ["proj-b"], "admin"))[0]

    page = await _open(browser, orch.http_url + "/", decide)
    await expect(page.locator("#who")).to_contain_text("producer · role decide")
    await page.evaluate("window.notReloaded = true")
    wid = (await orch.service.start_workflow(Caller(), project_id="proj-a", brief="a lighthouse keeper",
                                             options={"scenes": 2, "characters": 2, "story_threshold": 0})).workflow_id  # fmt: skip
    row = page.locator(f'tr[data-workflow="{wid}"]')
    await expect(row).to_be_visible()  # arrived over the live stream
    await row.get_by_role("link").click()
    answer = page.locator("#sec-decisions button[data-decide]")
    await expect(answer.first).to_be_visible(timeout=30_000)
    await expect(page.locator("#prod-status")).to_have_text("waiting decision")
    await expect(page.locator('svg.graph g.node.waiting[data-node="choose_concept"]')).to_have_count(1)
    await _shot(page, "1-decision-waiting")

    viewer = await _open(browser, f"{orch.http_url}/#/w/{wid}", read)
    await expect(viewer.locator("#sec-decisions .decision")).to_be_visible()
    await expect(viewer.locator("#sec-decisions")).to_contain_text("cannot answer")
    assert await viewer.locator("button[data-decide], button[data-op], button[data-fork]").count() == 0
    await _shot(viewer, "2-read-key")

    outsider = await _open(browser, orch.http_url + "/", other)
    await expect(outsider.locator("#list")).to_contain_text("No productions")
    await outsider.goto(f"{orch.http_url}/#/w/{wid}")
    await expect(outsider.locator("#detail [data-error='not_found']")).to_be_visible()
    assert "proj-a" not in await outsider.content()
    await _shot(outsider, "3-other-project")

    # Pause: the dialog asks first; Escape leaves it be, Confirm pauses; Resume brings the question back.
    await page.locator("#op-pause").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#confirm")).to_be_hidden()
    await expect(page.locator("#prod-status")).to_have_text("waiting decision")
    await page.locator("#op-pause").click()
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#prod-status")).to_have_text("paused")
    await page.locator("#op-resume").click()
    await page.locator("#confirm-ok").click()
    await expect(answer.first).to_be_visible(timeout=30_000)

    # The first decision by keyboard alone: Tab reaches an answer button, Enter presses it.
    await page.locator("#main").focus()
    assert await _tab_to(page, "button[data-decide]"), "no answer button reachable with Tab"
    await page.keyboard.press("Enter")
    approve = page.locator('#sec-decisions button[data-choice="approve"]')
    await expect(approve).to_be_visible(timeout=60_000)
    assert float(await page.locator("#sec-head progress").get_attribute("value") or 0) > 50
    await approve.click()
    await expect(page.locator("#prod-status")).to_have_text("completed", timeout=60_000)

    sheet = page.locator(".contact-sheet img")
    await expect(sheet.first).to_be_visible()
    assert await sheet.count() >= 4  # two scene frames and two portraits
    await expect(page.locator("#sec-deliverables audio").first).to_be_attached()
    await expect(page.locator("#sec-deliverables pre[aria-label=subtitles]")).to_contain_text("-->")
    await expect(page.locator("#sec-deliverables pre[aria-label=manifest]")).to_contain_text(wid)
    await expect(page.locator('svg.graph g.node.done[data-node="summary"]')).to_have_count(1)
    loaded = await sheet.evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
    assert loaded >= 1
    assert await page.evaluate("window.notReloaded") is True
    await _shot(page, "4-completed")
    events = await orch.service.events(Caller(), wid)
    assert {e["what"] for e in events if e["who"] == "producer"} >= {
        "decision.submitted",
        "workflow.paused",
        "workflow.resumed",
    }


@contextlib.asynccontextmanager
async def _server(env: dict[str, str], tmp: Path, *args: str) -> AsyncIterator[str]:
    full = {**os.environ, **env, "LOG_FILE": str(tmp / "front.log"), "LOG_FORMAT": "json",
            "INSTANCE_ID": "front", "TASK_POLL_SECONDS": "0.5"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--http", "127.0.0.1:0", "--engine-processes", "0", "--data-dir", str(tmp / "data"),
        *args, env=full, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    url = ""
    with anyio.fail_after(60):
        while not url:
            line = (await proc.stderr.readline()).decode()
            assert line, f"the server exited before listening (see {tmp / 'front.log'})"
            if "listening on" in line:
                url = line.split("listening on ")[1].split("/mcp")[0]
    drain = asyncio.create_task(proc.stderr.read())
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        drain.cancel()


async def test_the_board_works_behind_engine_processes(
    redis_url: str, key_prefix: str, tmp_path: Path, browser: Browser
) -> None:
    """A `serve --http --engine-processes 1` subprocess: the front renders the board, the child runs
    the production, and the page follows it live to its deliverable."""
    redis = await open_redis(redis_url)
    key = (await KeyStore(redis, key_prefix).create("producer", ["proj-a"], "decide"))[0]
    await redis.aclose()
    env = {"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "SANDBOX_WEBHOOK_DELAY_SECONDS": "0.1"}
    async with _server(env, tmp_path, "--sandbox", "--engine-processes", "1") as url:
        page = await _open(browser, url + "/", key)
        auth = {"Authorization": f"Bearer {key}"}
        async with (
            httpx2.AsyncClient(headers=auth, timeout=30) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as mcp,
        ):
            started: dict[str, Any] = structured(
                await mcp.call_tool("start_workflow", {"project_id": "proj-a", "workflow": "preview"})
            )
        wid = started["workflow_id"]
        await page.locator(f'tr[data-workflow="{wid}"] a').click()
        await expect(page.locator("#prod-status")).to_have_text("completed", timeout=60_000)
        keyframe = page.locator("#sec-deliverables .contact-sheet img")
        await expect(keyframe.first).to_be_visible()
        assert await keyframe.first.evaluate("i => i.complete && i.naturalWidth > 0")
        await expect(page.locator('svg.graph g.node.done[data-node="keyframe"]')).to_have_count(1)
        await _shot(page, "5-engine-processes")
        await page.context.close()


_HOST = """<!doctype html><html><body><h1>test host</h1>
<iframe id="app" sandbox="allow-scripts" title="production app" style="width: 900px; height: 700px"></iframe>
<script>
window.seen = [];
const frame = document.getElementById("app");
frame.srcdoc = APP_HTML;
const post = (m) => frame.contentWindow.postMessage(Object.assign({ jsonrpc: "2.0" }, m), "*");
window.addEventListener("message", async (e) => {
  if (e.source !== frame.contentWindow) return;
  const m = e.data;
  window.seen.push(m.method || "response");
  if (m.method === "ui/initialize") {
    post({ id: m.id, result: { protocolVersion: "2026-01-26", hostInfo: { name: "test-host", version: "0" },
                               hostCapabilities: { serverTools: {} }, hostContext: {} } });
  } else if (m.method === "ui/notifications/initialized") {
    post({ method: "ui/notifications/tool-input", params: { arguments: TOOL_ARGS } });
    post({ method: "ui/notifications/tool-result", params: TOOL_RESULT });
  } else if (m.method === "tools/call") {
    try { post({ id: m.id, result: await window.callTool(m.params.name, m.params.arguments) }); }
    catch (err) { post({ id: m.id, error: { code: -32000, message: String(err) } }); }
  }
});
</script></body></html>"""


def _js(value: Any) -> str:
    return json.dumps(value).replace("</", "<\\/")


async def test_the_mcp_app_follows_a_production_and_answers_through_its_host(
    orch: Orchestrator, browser: Browser
) -> None:
    """A stand-in host renders the ui:// resource in a sandboxed iframe, hands it start_workflow's
    result and relays its tools/call requests to the server: the app shows the production's progress,
    answers both decisions by click, and shows it completed."""
    async with Client(orch.mcp) as c:
        html = getattr((await c.read_resource(APP_URI)).contents[0], "text", "")
        arguments = {"project_id": "proj-a", "options": {"scenes": 1, "characters": 1, "story_threshold": 0}}
        started = await c.call_tool("start_workflow", arguments)

        async def call_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
            r = await c.call_tool(name, args)
            text = [getattr(x, "text", "") for x in r.content]
            return {"isError": r.is_error, "structuredContent": r.structured_content,
                    "content": [{"type": "text", "text": t} for t in text]}  # fmt: skip

        page = await (await browser.new_context(viewport={"width": 1000, "height": 800})).new_page()
        await page.expose_function("callTool", call_tool)
        result = {"structuredContent": started.structured_content, "content": []}
        await page.set_content(
            _HOST.replace("APP_HTML", _js(html))
            .replace("TOOL_ARGS", _js(arguments))
            .replace("TOOL_RESULT", _js(result))
        )
        app = page.frame_locator("iframe#app")
        concept = app.locator("button[data-decision]").first
        await expect(concept).to_be_visible(timeout=30_000)
        await _shot(page, "6-mcp-app-decision")
        await concept.click()
        approve = app.locator('button[data-choice="approve"]')
        await expect(approve).to_be_visible(timeout=60_000)
        await approve.click()
        await expect(app.locator(".badge")).to_have_text("completed", timeout=60_000)
        await expect(app.locator("dl")).to_contain_text("distributed")
        await _shot(page, "7-mcp-app-completed")
        seen = await page.evaluate("window.seen")
        assert seen[:2] == ["ui/initialize", "ui/notifications/initialized"]
        assert "tools/call" in seen
        assert "ui/notifications/size-changed" in seen
        await page.context.close()
