"""The workflow store's update: fields, events in order, the notice and the TTL in one atomic script call."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters import AnyRedis, ScriptPipeliner, StoreEvent, WorkflowStore


async def _created(store: WorkflowStore) -> str:
    rec, _ = await store.create(project_id="p1", workflow="preview", brief="", options={}, created_by="t",
                                correlation_id="c", enqueue=False)  # fmt: skip
    return rec.id


async def test_update_many_writes_fields_events_in_order_and_one_notice(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """Fields land, every event is appended in the order given, and one notice carries the last event."""
    store = WorkflowStore(redis_client, prefix=key_prefix)
    wid = await _created(store)
    r: Any = redis_client
    pubsub = r.pubsub()
    await pubsub.subscribe(store.channel(wid))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    events = [
        StoreEvent("step.started", {"step": "a"}),
        StoreEvent("step.finished", {"step": "a"}, "w", "cid-1"),
    ]
    await store.update_many(wid, {"status": "running", "percent": 40, "agents_running": ["x"]}, events)
    rec = await store.get(wid)
    assert rec is not None
    assert (rec.status, rec.percent, rec.agents_running) == ("running", 40, ["x"])
    log = await store.events(wid)
    assert [(e["what"], e["data"].get("step")) for e in log[-2:]] == [
        ("step.started", "a"),
        ("step.finished", "a"),
    ]
    assert (log[-1]["who"], log[-1]["correlation_id"]) == ("w", "cid-1")
    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert msg is not None
    assert msg["data"] == b"step.finished|running|40"
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    await pubsub.aclose()
    assert await r.ttl(store.key(wid)) == -1  # a running workflow's keys do not expire


async def test_an_ended_workflow_gets_its_retention_ttl_on_every_key(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """A terminal status sets the retention TTL on the record, events, decisions, jobs and memo."""
    store = WorkflowStore(redis_client, prefix=key_prefix, retention_seconds=3600)
    wid = await _created(store)
    r: Any = redis_client
    await store.record_decision(wid, "d1", {"choice": "a"})
    await store.remember_job(wid, "k", "job-1")
    await r.hset(store.key(wid, "memo"), "m", "1")
    await store.update(wid, {"status": "completed"}, event="workflow.completed")
    for suffix in ("", "events", "decisions", "jobs", "memo"):
        assert 3500 < await r.ttl(store.key(wid, suffix)) <= 3600, suffix


async def test_updates_share_round_trips_with_other_script_calls(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """Concurrent updates of many workflows go out through the shared pipeliner and all land."""
    pipeliner = ScriptPipeliner(redis_client)
    store = WorkflowStore(redis_client, prefix=key_prefix, pipeliner=pipeliner)
    wids = [await _created(store) for _ in range(20)]
    before = pipeliner.pipelines
    await asyncio.gather(*(store.update(w, {"message": f"m-{w}"}, event="x") for w in wids))
    assert pipeliner.pipelines - before < len(wids)
    for w in wids:
        rec = await store.get(w)
        assert rec is not None
        assert rec.message == f"m-{w}"
