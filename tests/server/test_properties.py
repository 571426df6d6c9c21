"""Property tests at every boundary: hypothesis-generated tool arguments, resource URIs, JSON-RPC bodies over
HTTP, Task Service webhooks and /ws frames.

For every input: no crash, no 5xx, a refusal names the field (or echoes the value it refuses), a refused call
writes no Redis key, and the server serves normally afterwards. One server for the whole module, with no
engine: what is in Redis changes only through the calls made here, so comparing key sets is exact. The
examples are derandomized (the same inputs on every run) and capped so the module runs in seconds.

Workflow options are generated as arbitrary dicts mixing the known option names with unknown keys and values
of every JSON type: the invariants hold whether the options are an untyped dict or a typed model per workflow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from adapters import AnyRedis, EmbeddedRedis, connect_redis
from graphs import WORKFLOWS
from server import JobRef, Orchestrator, Settings

TOOLS = {
    "start_workflow": ["project_id", "workflow", "brief", "options", "idempotency_key"],
    "get_status": ["workflow_id", "wait_seconds", "until"],
    "submit_decision": ["workflow_id", "decision_id", "choice", "comment"],
    "list_workflows": ["project_id", "status", "cursor", "limit"],
    "pause_workflow": ["workflow_id"],
    "resume_workflow": ["workflow_id"],
    "cancel_workflow": ["workflow_id"],
    "retry_step": ["workflow_id"],
    "fork_workflow": ["workflow_id", "checkpoint_id"],
    "list_agents": ["phase", "capability"],
}
# Per tool: 1,000 tool calls and 120 resource reads in process, plus the HTTP, webhook and /ws cases.
TOOL_EXAMPLES = 25
CALLS_PER_EXAMPLE = 4
OPTION_NAMES = ["scenes", "characters", "concept_count", "max_revisions", "story_threshold", "auto_approve"]


def _settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- strategies -------------------------------------------------------------------------------------------

ODD_STRINGS = ["", " ", "\x00", "../../etc/passwd", "a" * 5000, "☃" * 50, "wf-", "{x}", "%00", "\ud7ff", "*"]
leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(ODD_STRINGS)
)
json_value = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
options = st.dictionaries(
    st.sampled_from([*OPTION_NAMES, "bogus"]) | st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12) | json_value,
    max_size=6,
) | json_value  # fmt: skip


@dataclass
class World:
    """The module's server and what the strategies may refer to."""

    orch: Orchestrator
    client: Client
    redis: AnyRedis
    prefix: str
    key: str
    http: httpx.AsyncClient
    wids: list[str] = field(default_factory=list)

    async def keys(self) -> set[bytes]:
        """Every key of this server."""
        return {k async for k in self.redis.scan_iter(match=f"{self.prefix}*", count=1000)}


def plausible(name: str, wids: list[str]) -> st.SearchStrategy[Any]:
    """Values for a known argument: often well-formed, sometimes nearly, sometimes anything."""
    wid_like = st.sampled_from(wids) | st.sampled_from(
        ["wf-0000000000000000", "wf-zzzz", "WF-0123456789abcdef"]
    )
    table: dict[str, st.SearchStrategy[Any]] = {
        "project_id": st.sampled_from(["p1", "p-2", "p_3", "", "p 1", "p/1", "p" * 101, "*"]),
        "workflow": st.sampled_from([*WORKFLOWS, "nope", "", "MOVIE_PRODUCTION"]),
        "workflow_id": wid_like,
        "brief": st.text(max_size=200) | st.sampled_from(["x" * 20_001]),
        "options": options,
        # Valid waits are kept short: this server has no engine, so a valid wait lasts its whole length.
        "wait_seconds": st.sampled_from([-1, 0, 0.01, 300.5, 1e308, math.inf, math.nan, "1", True]),
        "until": st.lists(st.sampled_from(["completed", "failed", "nope", ""]), max_size=3),
        "status": st.sampled_from(["queued", "running", "completed", "nope", ""]),
        "limit": st.integers(min_value=-5, max_value=10**6),
        "phase": st.sampled_from(["story", "scene", "nope", ""]),
        "checkpoint_id": st.text(max_size=40),
    }
    base = table.get(name, st.text(max_size=40))
    return base | json_value if name != "wait_seconds" else base


def arguments(tool: str, wids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A tool's arguments: any subset of its parameters, and now and then keys it does not have."""
    known = st.fixed_dictionaries({}, optional={name: plausible(name, wids) for name in TOOLS[tool]})
    extra = st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in TOOLS[tool]), json_value,
                            max_size=2)  # fmt: skip
    return st.tuples(known, extra).map(lambda kv: {**kv[1], **kv[0]})


# -- the server -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def world(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """One server (HTTP port with API keys, no engine) for the whole module (so not `open_orch`, which is
    per test)."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    cfg = Settings(redis_url=SecretStr(redis_server.url), key_prefix=prefix, instance_id=f"prop-{prefix}",
                   data_dir=Path(tmp_path_factory.mktemp("prop")) / "redis")  # fmt: skip
    redis = connect_redis(redis_server.url)
    # The SDK logs every refused call at INFO through rich: 8 ms a call, most of this module's time.
    mcp_log = logging.getLogger("mcp")
    level = mcp_log.level
    mcp_log.setLevel(logging.WARNING)
    async with Orchestrator.open(cfg, with_engine=False, http=("127.0.0.1", 0)) as orch:
        # The client's task group must be entered and left by one task; fixture set-up and tear-down are two.
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()

        async def hold_client() -> None:
            async with Client(orch.mcp) as c:
                ready.set_result(c)
                await done.wait()

        holder = asyncio.create_task(hold_client())
        c = await ready
        assert orch.keys is not None
        key, _ = await orch.keys.create("property-tests", ["*"], "admin")
        # One HTTP client for the module (making one per example costs more than the call).
        http = httpx.AsyncClient(base_url=orch.http_url, timeout=30)
        w = World(orch, c, redis, prefix, key, http)
        for i in range(3):
            res = await c.call_tool("start_workflow", {"project_id": "p1", "brief": f"known {i}"})
            w.wids.append(res.structured_content["workflow_id"])
        yield w
        await http.aclose()
        done.set()
        await holder
        async for k in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(k)
    await redis.aclose()
    mcp_log.setLevel(level)


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def names_the_field(text: str, args: dict[str, Any], fields: list[str]) -> bool:
    """A refusal names a parameter or argument, or quotes the value it refuses."""
    if any(name and name in text for name in [*fields, *args]):
        return True
    return any(isinstance(v, str) and len(v) > 2 and v in text for v in args.values())


async def serves_normally(w: World) -> None:
    """A well-formed call still works."""
    res = await w.client.call_tool("get_status", {"workflow_id": w.wids[0]})
    assert not res.is_error, _text(res)
    assert res.structured_content["workflow_id"] == w.wids[0]


# -- tools and resources, in process ----------------------------------------------------------------------


@pytest.fixture
def reached(tool: str) -> Iterator[Counter[str]]:
    """What one tool's examples reached: by the end of its property test, refusals (and, but for a tool that
    needs a workflow in a state the examples rarely meet, answers too), every call counted."""
    seen: Counter[str] = Counter()
    yield seen
    # Checked when the test has run all its examples (a fixture outlives hypothesis' examples of one test).
    assert seen["refused"] > 0, (tool, seen)
    assert seen.total() >= TOOL_EXAMPLES * CALLS_PER_EXAMPLE, (tool, seen)


@pytest.mark.parametrize("tool", sorted(TOOLS))
@_settings(TOOL_EXAMPLES)
@given(data=st.data())
async def test_any_tool_arguments(
    world: World, tool: str, reached: Counter[str], data: st.DataObject
) -> None:
    """Any arguments: an answer or a refusal naming the field; a refusal writes nothing. Both are reached."""
    for _ in range(CALLS_PER_EXAMPLE):  # several calls per example: the per-example overhead is the cost
        args = data.draw(arguments(tool, world.wids), label="arguments")
        reached["refused" if await _one_call(world, tool, args) else "answered"] += 1


async def _one_call(world: World, tool: str, args: dict[str, Any]) -> bool:
    """Call `tool` with `args`; True when it was refused (naming the field, writing nothing)."""
    before = await world.keys()
    refusal: str | None = None
    try:
        result = await world.client.call_tool(tool, args)
    except MCPError as exc:  # a protocol-level refusal is allowed when it names the field
        refusal = str(exc)
    if refusal is None and result.is_error:
        refusal = _text(result)
        assert "internal" not in refusal.lower(), refusal
    if refusal is None:
        return False
    assert "Traceback" not in refusal
    assert names_the_field(refusal, args, TOOLS[tool]), (args, refusal)
    assert await world.keys() == before, (args, refusal)
    return True


@pytest.fixture
def uris_reached() -> Iterator[Counter[str]]:
    """What the resource examples reached: contents and refusals, both, by the end of the test."""
    seen: Counter[str] = Counter()
    yield seen
    assert seen["answered"] > 0, seen
    assert seen["refused"] > 0, seen


@_settings(120)
@given(data=st.data())
async def test_any_resource_uri(world: World, uris_reached: Counter[str], data: st.DataObject) -> None:
    """Any URI, well-formed or not: contents or a refusal naming what is wrong; nothing is written."""
    wid = st.sampled_from(world.wids) | st.text(max_size=30) | st.sampled_from(ODD_STRINGS)
    uris = (
        st.builds(lambda w, part: f"workflow://{w}/{part}", wid,
                  st.sampled_from(["state", "decisions", "events", "checkpoints", "checkpoints/x", "nope", ""]))
        | st.sampled_from(["agents://registry", "security://audit", "agents://", "workflow://", "file:///etc/passwd"])
        | st.text(max_size=60)
    )  # fmt: skip
    uri = data.draw(uris, label="uri")
    before = await world.keys()
    try:
        res = await world.client.read_resource(uri)
        assert res.contents
        uris_reached["answered"] += 1
    except MCPError as exc:
        text = str(exc)
        assert "Traceback" not in text
        assert any(
            w in text for w in ("workflow_id", "checkpoint_id", "Unknown resource", "not found", "uri")
        ), (
            uri,
            text,
        )
        uris_reached["refused"] += 1
    assert await world.keys() == before


async def test_in_process_serves_normally_afterwards(world: World) -> None:
    """The server still serves normally after whatever the property tests sent it (alone: it serves)."""
    await serves_normally(world)


# -- HTTP: JSON-RPC bodies, webhooks ----------------------------------------------------------------------

HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}  # fmt: skip


def rpc_bodies(wids: list[str]) -> st.SearchStrategy[bytes]:
    """JSON-RPC requests with arbitrary parameters, arbitrary JSON, and bytes that are not JSON."""
    call = st.sampled_from(sorted(TOOLS)).flatmap(
        lambda tool: arguments(tool, wids).map(lambda a: {"name": tool, "arguments": a})
    )
    params = call | st.fixed_dictionaries({"uri": st.text(max_size=40)}) | json_value
    method = st.sampled_from(["tools/call", "resources/read", "tools/list", "resources/list", "initialize"])
    envelope = st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": method | st.text(max_size=20)},
        optional={"id": st.integers() | st.text(max_size=8) | st.none(), "params": params},
    )
    return (
        envelope.map(lambda e: json.dumps(e, allow_nan=True).encode())
        | json_value.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=200)
    )


def _refused(status: int, body: bytes) -> bool:
    if status >= 400:
        return True
    try:
        msg = json.loads(body)
    except ValueError:
        return False
    return isinstance(msg, dict) and ("error" in msg or bool((msg.get("result") or {}).get("isError")))


@_settings(80)
@given(data=st.data())
async def test_any_json_rpc_body_over_http(world: World, data: st.DataObject) -> None:
    """Whatever is POSTed to /mcp: never a 5xx; what is refused writes nothing."""
    body = data.draw(rpc_bodies(world.wids), label="body")
    headers = {**HEADERS, "Authorization": f"Bearer {world.key}"}
    before = await world.keys()
    r = await world.http.post("/mcp", content=body, headers=headers)
    assert r.status_code < 500, (body, r.status_code, r.text)
    if _refused(r.status_code, r.content):
        assert await world.keys() == before, (body, r.text)


async def test_http_serves_normally_afterwards(world: World) -> None:
    """After every body above, a well-formed call over HTTP is answered."""
    headers = {**HEADERS, "Authorization": f"Bearer {world.key}"}
    r = await world.http.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": "get_status", "arguments": {"workflow_id": world.wids[0]}}})  # fmt: skip
    assert r.status_code == 200
    assert world.wids[0] in r.text


@_settings(100)
@given(data=st.data())
async def test_any_webhook(world: World, data: st.DataObject) -> None:
    """Task Service webhooks with any query and body: never a 5xx; refused ones write nothing."""
    secret = world.orch.webhook_secret
    query = st.fixed_dictionaries(
        {}, optional={"wid": st.sampled_from(world.wids) | st.text(max_size=20), "step": st.text(max_size=20),
                      "token": st.text(max_size=70)},
    )  # fmt: skip
    signed = st.tuples(st.sampled_from(world.wids), st.text(max_size=20), st.text(max_size=16)).map(
        lambda wsn: {
            "wid": wsn[0],
            "step": wsn[1],
            "n": wsn[2],
            "token": JobRef(wsn[0], wsn[1]).token(secret, wsn[2]),
        }
    )
    payload = st.fixed_dictionaries(
        {}, optional={"task_id": json_value, "status": json_value, "result": json_value, "error": json_value,
                      "completed_at": json_value | st.sampled_from(["2026-01-01T00:00:00+00:00", "yesterday"]),
                      "failed_at": json_value},
    )  # fmt: skip
    body = (
        payload.map(lambda p: json.dumps(p).encode())
        | json_value.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=100)
    )

    q = data.draw(query | signed, label="query")
    content = data.draw(body, label="body")
    before = await world.keys()
    r = await world.http.post("/webhooks/tasks", params=q, content=content,
                              headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code < 500, (q, content, r.status_code, r.text)
    if r.status_code >= 400:
        assert "error" in r.json()
        assert await world.keys() == before, (q, content)
    else:
        assert r.json()["ok"] is True


# -- /ws frames -------------------------------------------------------------------------------------------


async def _ws(w: World) -> ClientConnection:
    url = w.orch.http_url.replace("http://", "ws://") + "/ws"
    conn = await connect(url, subprotocols=["mcp"],  # type: ignore[list-item]
                         additional_headers={"Authorization": f"Bearer {w.key}"})  # fmt: skip
    await conn.send(json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "prop", "version": "0"}}}))  # fmt: skip
    assert "serverInfo" in str(await conn.recv())
    await conn.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    return conn


async def _probe(conn: ClientConnection, wid: str, n: int) -> list[dict[str, Any]]:
    """Send a well-formed call and read until its answer; returns what came before it."""
    probe_id = f"probe-{n}"
    await conn.send(json.dumps({"jsonrpc": "2.0", "id": probe_id, "method": "tools/call",
                                "params": {"name": "get_status", "arguments": {"workflow_id": wid}}}))  # fmt: skip
    others: list[dict[str, Any]] = []
    while True:
        msg = json.loads(await conn.recv())
        if msg.get("id") == probe_id:
            assert wid in json.dumps(msg["result"])
            return others
        others.append(msg)


WS: dict[str, Any] = {"n": 0}


@_settings(80)
@given(data=st.data())
async def test_any_ws_frame(world: World, data: st.DataObject) -> None:
    """Any text or binary frame on /ws: the session answers, refuses or ignores it, and a well-formed call
    on the same connection is still answered (or, if the server closed it, not with an internal error)."""
    frames = rpc_bodies(world.wids).map(lambda b: b.decode(errors="replace")) | st.binary(max_size=50)
    frame = data.draw(frames, label="frame")
    if "conn" not in WS:
        WS["conn"] = await _ws(world)
    conn: ClientConnection = WS["conn"]
    WS["n"] += 1
    before = await world.keys()
    closed: ConnectionClosed | None = None
    try:
        await conn.send(frame)
        others = await _probe(conn, world.wids[0], WS["n"])
    except ConnectionClosed as exc:
        closed = exc
    if closed is not None:
        assert closed.rcvd is None or closed.rcvd.code != 1011, closed  # never an internal error
        WS.pop("conn")
        return
    if all("error" in m or (m.get("result") or {}).get("isError") for m in others):
        assert await world.keys() == before, frame


async def test_ws_serves_normally_afterwards(world: World) -> None:
    """After every frame above, a new session and the last one both answer."""
    conn = WS.pop("conn", None) or await _ws(world)
    await _probe(conn, world.wids[0], 0)
    await conn.close()
    fresh = await _ws(world)
    await _probe(fresh, world.wids[0], 1)
    await fresh.close()
