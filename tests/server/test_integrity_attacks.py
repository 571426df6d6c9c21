"""Attacks on stored state, as someone who can write to Redis but lacks the integrity key would try them.

One production is brought to its final approval (answered, queued, not yet run) next to a second
workflow, Y, whose validly signed values serve as swaps. Every key of the first workflow is found by
scanning Redis; for every kind of key that steers a run, one byte is changed, Y's value is swapped in,
and the key is deleted, each on a fresh copy of the state, and the run is resumed. Each attempt must
end in ``integrity_error`` with an ``integrity.failed`` audit entry, no step event and no outside job.
The issue's table of attacks is reproduced row by row, then the webhook and forwarded-header ones.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from prometheus_client import generate_latest
from pydantic import SecretStr

from server import JobRef, Orchestrator, Sandbox, Settings
from tests.server.conftest import OpenOrchestrator, structured

KEYS = "k" * 32 + ",old-key-still-verifies"

# Every key a workflow leaves in Redis, by kind (the workflow id replaced by WID). Those that steer a
# run are attacked; the others are listed with why they do not steer one (the README's "what is not").
STEERING = {
    "wf:{WID}": "record",
    "wf:{WID}:decisions": "decisions",
    "wf:{WID}:jobs": "jobs and their results",
    "wf:{WID}:memo": "memo",
    "cp:{WID}:ns": "checkpoint namespaces",
    "cp:{WID}:ids:": "checkpoint ids",
    "cp:{WID}:cp:": "checkpoint records",
    "cp:{WID}:bl:": "channel blobs",
    "cp:{WID}:wi:": "pending writes index",
    "cp:{WID}:wv:": "pending writes",
}
NOT_STEERING = {
    "wf:{WID}:events": "the event stream is a record for people; no run reads it",
    "lease:{WID}": "the lease says which instance runs it; availability only",
    "wf:{WID}:budget": "budget counters can only stop a run (budget_exceeded) or let it use more of its "
    "budget; availability, not what the run does",
    "wf:{WID}:attempts": "crash counts can only quarantine a run; availability, not what the run does",
}


def _kind(key: str, wid: str) -> str:
    return key.replace("{" + wid + "}", "{WID}")


def _flip(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1]) if value else b"\x01"


class Lab:
    """The two workflows, a copy of the first's keys, and what counts as 'something proceeded'."""

    def __init__(
        self, orch: Orchestrator, x: str, y: str, snapshot: dict[str, bytes], sandbox: Sandbox
    ) -> None:
        self.orch, self.x, self.y, self.snapshot, self.sandbox = orch, x, y, snapshot, sandbox
        self.r: Any = orch.redis
        self.prefix = orch.settings.key_prefix + ":"

    async def keys_of(self, wid: str) -> list[str]:
        return sorted(
            [k.decode() async for k in self.r.scan_iter(match=f"{self.prefix}*{{{wid}}}*", count=1000)]
        )

    async def restore(self) -> None:
        for k in await self.keys_of(self.x):
            await self.r.delete(k)
        for k, dump in self.snapshot.items():
            await self.r.restore(k, 0, dump, replace=True)

    async def newest(self, wid: str) -> str:
        return str((await self.r.zrevrange(f"{self.prefix}cp:{{{wid}}}:ids:", 0, 0))[0].decode())

    async def audit_count(self) -> int:
        assert self.orch.keys is not None
        return sum(1 for e in await self.orch.audit.read()
                   if e["what"] == "integrity.failed" and e["data"].get("workflow_id") == self.x)  # fmt: skip

    async def step_events(self) -> int:
        return sum(1 for e in await self.orch.store.events(self.x) if e["what"].startswith("step."))

    async def resume(self) -> dict[str, Any]:
        """Queue a run of X and wait until it ended, one way or another; returns what changed."""
        audits, steps = await self.audit_count(), await self.step_events()
        jobs = len(self.sandbox.task_service.tasks)
        await self.orch.store.enqueue(self.x, "decision", "attack")
        assert self.orch.engine is not None
        audit_len = await self.r.xlen(f"{self.prefix}audit")
        with anyio.fail_after(60):
            while True:
                await anyio.sleep(0.05)
                raw = await self.r.hget(self.orch.store.key(self.x), "status")
                ended = await self.r.xlen(f"{self.prefix}audit") > audit_len or (
                    raw is not None and b"completed" in raw
                )
                if ended and self.x not in self.orch.engine.running:
                    break
        return {
            "audited": await self.audit_count() - audits,
            "steps": await self.step_events() - steps,
            "jobs": len(self.sandbox.task_service.tasks) - jobs,
            "last_event": (await self.orch.store.events(self.x))[-1]["what"],
        }


async def _production(c: Client, wid_box: list[str], options: dict[str, Any]) -> None:
    st = structured(await c.call_tool("start_workflow", {"project_id": "p", "options": options}))
    wid_box.append(st["workflow_id"])


async def _wait_decision(c: Client, wid: str, count: int) -> dict[str, Any]:
    """Answer decisions with their first option until the `count`-th is open; returns it."""
    seen = 0
    with anyio.fail_after(60):
        while True:
            st = structured(await c.call_tool("get_status", {"workflow_id": wid, "wait_seconds": 1,
                                                             "until": ["waiting_decision", "failed", "completed"]}))  # fmt: skip
            assert st["status"] not in {"failed", "completed"}, st
            if st["status"] != "waiting_decision":
                continue
            d = st["pending_decisions"][0]
            seen += 1
            if seen == count:
                return dict(d)
            await c.call_tool("submit_decision", {"workflow_id": wid, "decision_id": d["id"],
                                                  "choice": d["options"][0]})  # fmt: skip


@pytest.fixture
async def lab(open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings) -> Any:
    """X answered at its final approval and queued (not run); Y waiting at its own final approval."""
    keyed = settings.model_copy(update={"integrity_keys": SecretStr(KEYS)})
    opts = {"scenes": 1, "characters": 1, "concept_count": 2}
    async with open_orch(sandbox=standins, base=keyed) as first, Client(first.mcp) as c:
        wids: list[str] = []
        await _production(c, wids, opts)
        await _production(c, wids, opts)
        x, y = wids
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_decision, c, x, 2)
            tg.start_soon(_wait_decision, c, y, 2)
    async with open_orch(engine=False, http=False, base=keyed) as second, Client(second.mcp) as c:
        st = structured(await c.call_tool("get_status", {"workflow_id": x}))
        d = st["pending_decisions"][0]
        await c.call_tool(
            "submit_decision", {"workflow_id": x, "decision_id": d["id"], "choice": d["options"][0]}
        )
        r: Any = second.redis
        await r.delete(second.store.queue_key)  # the run is started by each attack, not by this entry
        keys = sorted([k.decode() async for k in r.scan_iter(match=f"{settings.key_prefix}:*{{{x}}}*")])
        snapshot = {k: await r.dump(k) for k in keys}
    async with open_orch(sandbox=standins, base=keyed) as orch:
        yield Lab(orch, x, y, snapshot, standins)


Attack = Callable[[Lab, str], Awaitable[None]]


async def _change_a_byte(lab: Lab, key: str) -> None:
    r, kind = lab.r, await lab.r.type(key)
    newest = await lab.newest(lab.x)
    if kind == b"hash":
        fields = sorted(await r.hkeys(key))
        # the value the resumed run reads first: the newest checkpoint, a blob or write it references
        if key.endswith(":cp:"):
            field = newest.encode()
        elif key.endswith(":bl:"):
            rec = await r.hget(key.replace(":bl:", ":cp:"), newest)
            field = next(f for f in fields if f in rec)
        elif key.endswith(":wv:"):
            field = next(f for f in fields if f.startswith(newest.encode()))
        else:
            field = fields[0]
        await r.hset(key, field, _flip(await r.hget(key, field)))
    elif kind == b"zset":
        member = next(m for m in await r.zrange(key, 0, -1) if m.startswith(newest.encode()))
        await r.zrem(key, member)
        await r.zadd(key, {_flip(member): 0})
    elif kind == b"set":
        members = await r.smembers(key)
        await r.srem(key, *members)
        await r.sadd(key, *[m + b"\x01" for m in members])
    else:
        await r.set(key, _flip(await r.get(key)), keepttl=True)


async def _swap_from_y(lab: Lab, key: str) -> None:
    r = lab.r
    source = key.replace("{" + lab.x + "}", "{" + lab.y + "}")
    if await r.type(key) == b"hash" and await r.type(source) == b"hash":
        # field by field, so the swapped values sit under the names this workflow's run reads
        mine_f, theirs_v = (
            sorted(await r.hkeys(key)),
            [v for _, v in sorted((await r.hgetall(source)).items())],
        )
        for f, v in zip(mine_f, theirs_v, strict=False):
            await r.hset(key, f, v)
    else:
        await r.restore(key, 0, await r.dump(source), replace=True)


async def _delete(lab: Lab, key: str) -> None:
    await lab.r.delete(key)


ATTACKS: dict[str, Attack] = {"one byte changed": _change_a_byte, "swapped from Y": _swap_from_y,
                              "deleted": _delete}  # fmt: skip


async def test_attacks_on_stored_state_stop_the_run(lab: Lab) -> None:
    """Each kind of key a run depends on: a changed byte, Y's signed value, or its deletion stops the run;
    so does every row of the issue's table; a queue entry alone makes no run act (one set-up for all)."""
    await _issue_rows(lab)
    await _queue_entry_alone(lab)
    kinds = {_kind(k, lab.x) for k in lab.snapshot}
    kinds = {k.removeprefix(lab.prefix) for k in kinds}
    assert kinds <= {*STEERING, *NOT_STEERING}, (
        f"a kind of key nobody classified: {kinds - {*STEERING, *NOT_STEERING}}"
    )
    assert kinds >= set(STEERING), f"the run did not produce {set(STEERING) - kinds}"

    # Control: the untouched copy resumes and finishes, with step events (so the checks below can fail).
    await lab.restore()
    control = await lab.resume()
    assert (control["audited"], control["steps"] > 0, control["last_event"]) == (
        0,
        True,
        "workflow.completed",
    )

    failures = []
    for kind in STEERING:
        key = next(k for k in lab.snapshot if _kind(k, lab.x).removeprefix(lab.prefix) == kind)
        for name, attack in ATTACKS.items():
            await lab.restore()
            before = await lab.r.dump(key)
            await attack(lab, key)
            if await lab.r.dump(key) == before:
                # Y's value is byte for byte X's (the namespace set {""}): there is nothing to detect.
                assert (kind, name) == ("cp:{WID}:ns", "swapped from Y")
                continue
            got = await lab.resume()
            if (got["audited"], got["steps"], got["jobs"], got["last_event"]) != (
                1,
                0,
                0,
                "integrity.failed",
            ):
                failures.append((kind, name, got))
    assert not failures, failures


async def _newest_record(lab: Lab, wid: str) -> tuple[str, bytes]:
    cp = f"{lab.prefix}cp:{{{wid}}}:cp:"
    newest = await lab.newest(wid)
    return cp, await lab.r.hget(cp, newest)


async def _flip_at(lab: Lab, at: Callable[[bytes], int]) -> None:
    cp, rec = await _newest_record(lab, lab.x)
    i = at(rec)
    await lab.r.hset(cp, await lab.newest(lab.x), rec[:i] + bytes([rec[i] ^ 1]) + rec[i + 1 :])


async def _ref_digit(lab: Lab) -> None:
    cp, rec = await _newest_record(lab, lab.x)
    i = rec.index(b"\x00") + 5  # inside the first reference's version, before the signed body
    digit = b"1" if rec[i : i + 1] != b"1" else b"2"
    await lab.r.hset(cp, await lab.newest(lab.x), rec[:i] + digit + rec[i + 1 :])


async def _concept_from_y(lab: Lab) -> None:
    bl_x, bl_y = (f"{lab.prefix}cp:{{{w}}}:bl:" for w in (lab.x, lab.y))
    (_, rec_x), (_, rec_y) = await _newest_record(lab, lab.x), await _newest_record(lab, lab.y)
    fields_x = [f for f in await lab.r.hkeys(bl_x) if f.startswith(b"concept\x00") and f in rec_x]
    fields_y = [f for f in await lab.r.hkeys(bl_y) if f.startswith(b"concept\x00") and f in rec_y]
    await lab.r.hset(bl_x, fields_x[0], await lab.r.hget(bl_y, fields_y[0]))


async def _forged_decision(lab: Lab) -> None:
    key = lab.orch.store.key(lab.x, "decisions")
    for field in await lab.r.hkeys(key):
        await lab.r.hset(
            key, field, json.dumps({"choice": "reject", "by": "producer", "comment": "", "at": 0})
        )


async def _memo_injection(lab: Lab) -> None:
    await lab.r.hset(lab.orch.store.key(lab.x, "memo"), "story:story_writer",
                     json.dumps({"logline": "the attacker's theme"}))  # fmt: skip


async def _job_id_byte(lab: Lab) -> None:
    key = lab.orch.store.key(lab.x, "jobs")
    step = max(await lab.r.hkeys(key))  # a step's entry (results sort before steps)
    await lab.r.hset(key, step, _flip(await lab.r.hget(key, step)))


async def _options_byte(lab: Lab) -> None:
    key = lab.orch.store.key(lab.x)
    await lab.r.hset(key, "options", _flip(await lab.r.hget(key, "options")))


# The issue's table, row by row (the webhook and forwarded-header rows are tests of their own below).
ROWS: dict[str, Callable[[Lab], Awaitable[None]]] = {
    "a byte inside the signed checkpoint body": lambda lab: _flip_at(lab, lambda rec: len(rec) // 2),
    "the checkpoint record's last byte (its parent id)": lambda lab: _flip_at(lab, lambda rec: len(rec) - 1),
    "one digit of a channel reference inside the checkpoint record": _ref_digit,
    "a byte of the workflow record's options": _options_byte,
    "X's concept blob replaced by Y's (validly signed)": _concept_from_y,
    "a forged decision (HSET reject by 'producer') plus a queue entry": _forged_decision,
    "an entry injected into the agents' memo": _memo_injection,
    "a byte of a step's recorded job id": _job_id_byte,
}


async def _issue_rows(lab: Lab) -> None:
    """Every row of the issue's table that needs Redis access ends in integrity_error, audited, nothing run."""
    failures = []
    for row, attack in ROWS.items():
        await lab.restore()
        await attack(lab)
        got = await lab.resume()
        if (got["audited"], got["steps"], got["jobs"], got["last_event"]) != (1, 0, 0, "integrity.failed"):
            failures.append((row, got))
    assert not failures, failures


async def _queue_entry_alone(lab: Lab) -> None:
    """Y waits for an answer; a forged queue entry for it only makes it ask again: no step runs."""
    store = lab.orch.store
    before = await store.events(lab.y)
    await store.enqueue(lab.y, "decision", "forged")
    with anyio.fail_after(30):
        while len(after := await store.events(lab.y)) == len(before):
            await anyio.sleep(0.05)
    new = [e["what"] for e in after[len(before) :]]
    assert not [w for w in new if w.startswith("step.")], new
    rec = await store.get(lab.y)
    assert rec is not None
    assert rec.status == "waiting_decision"


async def _webhook(orch: Orchestrator, wid: str, step: str, nonce: str, task_id: str) -> httpx.Response:
    params = {
        "wid": wid,
        "step": step,
        "n": nonce,
        "token": JobRef(wid, step).token(orch.webhook_secret, nonce),
    }
    body = {"task_id": task_id, "status": "completed", "result": {"media_url": "http://attacker.invalid/evil",
                                                                    "score": 99}}  # fmt: skip
    async with httpx.AsyncClient(base_url=orch.http_url) as http:
        return await http.post("/webhooks/tasks", params=params, json=body)


async def test_a_webhook_is_bound_to_its_own_job(orch: Orchestrator) -> None:
    """A valid token for the attacker's own step cannot deliver another job's result; a step that submitted
    nothing, or a token of an earlier submission, is refused; refusals are counted and audited."""
    store = orch.store
    await store.remember_job("wf-attacker", "wf-attacker:s", "t-attacker", "na")
    await store.remember_job("wf-victim", "wf-victim:s", "t-victim", "nv")
    cross = await _webhook(orch, "wf-attacker", "s", "na", "t-victim")
    assert cross.status_code == 409
    assert "t-victim" in cross.json()["error"]
    assert await store.job_result("wf-victim", "wf-victim:s", "t-victim") is None
    assert await store.job_result("wf-attacker", "wf-attacker:s", "t-victim") is None
    never = await _webhook(orch, "wf-attacker", "never-submitted", "na", "t-attacker")
    assert never.status_code == 404
    stale = await _webhook(orch, "wf-attacker", "s", "an-earlier-nonce", "t-attacker")
    assert stale.status_code == 404
    # the job's own webhook is accepted once, then idempotent
    own = [await _webhook(orch, "wf-victim", "s", "nv", "t-victim") for _ in range(2)]
    assert [r.json() for r in own] == [
        {"ok": True, "duplicate": False, "late": False},
        {"ok": True, "duplicate": True, "late": False},
    ]
    # before the submission answered, the step's webhook is expected (no id yet) and lands in its own workflow only
    await store.remember_job("wf-attacker", "wf-attacker:early", "", "ne")
    early = await _webhook(orch, "wf-attacker", "early", "ne", "t-victim-2")
    assert early.status_code == 200
    assert await store.job_result("wf-attacker", "wf-attacker:early", "t-victim-2") is not None
    assert await store.job_result("wf-victim", "wf-victim:s", "t-victim-2") is None
    metrics = generate_latest(orch.metrics.registry).decode()
    assert 'mo_webhooks_total{outcome="refused_other_job"} 1.0' in metrics
    assert 'mo_webhooks_total{outcome="refused_unknown_job"} 2.0' in metrics
    assert orch.keys is not None
    refusals = [e["data"] for e in await orch.audit.read() if e["what"] == "webhook.refused"]
    assert [(d["workflow_id"], d["outcome"]) for d in refusals] == [
        ("wf-attacker", "refused_other_job"), ("wf-attacker", "refused_unknown_job"),
        ("wf-attacker", "refused_unknown_job")]  # fmt: skip


async def _wrong_keys(orch: Orchestrator, n: int) -> list[int]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    hdr = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    async with httpx.AsyncClient(base_url=orch.http_url) as http:
        return [(await http.post("/mcp", json=body, headers=hdr | {"Authorization": f"Bearer wrong{i}",
                                                                   "X-Forwarded-For": f"203.0.113.{i}"})).status_code
                for i in range(n)]  # fmt: skip


async def _sources(orch: Orchestrator) -> set[str]:
    assert orch.keys is not None
    return {e["data"]["source"] for e in await orch.audit.read() if e["what"].startswith("auth.")}


async def test_forged_forwarded_headers_change_nothing(
    open_orch: OpenOrchestrator, settings: Settings
) -> None:
    """50 wrong keys, each with another X-Forwarded-For, are throttled as one address and audited as the peer."""
    async with open_orch(engine=False) as orch:
        codes = await _wrong_keys(orch, 50)
        limit = settings.auth_failures_per_minute
        assert codes == [401] * limit + [429] * (50 - limit)
        assert await _sources(orch) == {"127.0.0.1"}


async def test_a_trusted_proxy_names_the_caller(open_orch: OpenOrchestrator, settings: Settings) -> None:
    """Behind a configured proxy, its X-Forwarded-For is the caller's address (throttle and audit)."""
    trusted = settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    async with open_orch(engine=False, base=trusted) as orch:
        codes = await _wrong_keys(orch, 12)
        assert codes == [401] * 12  # twelve addresses, one failure each
        assert await _sources(orch) == {f"203.0.113.{i}" for i in range(12)}
    with pytest.raises(ValueError, match="not an IP address or network"):
        Settings(trusted_proxies="10.0.0.0/8,proxy.example")
