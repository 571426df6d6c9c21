"""Workflows on a 3-master Redis Cluster: productions complete, and no start is ever claimed before its record."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from mcp import Client
from pydantic import SecretStr

from adapters import EmbeddedCluster, WorkflowStore, open_redis
from server import Sandbox, Settings
from tests.server.conftest import OpenOrchestrator, structured

pytestmark = pytest.mark.slow


async def _see_through(client: Client, wid: str) -> dict[str, Any]:
    """Follow a workflow to its end, answering every decision with the recommended option."""
    with anyio.fail_after(120):
        while True:
            st = structured(await client.call_tool(
                "get_status",
                {"workflow_id": wid, "wait_seconds": 10,
                 "until": ["waiting_decision", "completed", "failed", "cancelled"]},
            ))  # fmt: skip
            if st["status"] in {"completed", "failed", "cancelled"}:
                return st
            for d in st.get("pending_decisions", []) if st["status"] == "waiting_decision" else []:
                choice = d.get("context", {}).get("recommended") or d["options"][0]
                structured(await client.call_tool(
                    "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": choice}
                ))  # fmt: skip


async def test_productions_complete_on_a_cluster(
    open_orch: OpenOrchestrator, standins: Sandbox, cluster: EmbeddedCluster, key_prefix: str, tmp_path: Path
) -> None:
    """Previews and small productions started together on the cluster all complete, each job submitted once."""
    settings = Settings(
        redis_url=SecretStr(cluster.url),
        key_prefix=key_prefix,
        data_dir=tmp_path / "redis",
        lease_seconds=2.0,
        task_poll_seconds=0.2,
        instance_id=f"test-{key_prefix}",
    )
    async with open_orch(sandbox=standins, base=settings) as orch, Client(orch.mcp) as client:
        standins.task_service.latency = 0.05
        starts: list[dict[str, Any]] = [
            *({"project_id": f"p{i}", "workflow": "preview", "brief": f"brief {i}"} for i in range(6)),
            *({"project_id": f"m{i}", "workflow": "movie_production", "options": {"scenes": 1, "characters": 1}}
              for i in range(2)),
        ]  # fmt: skip
        wids = [structured(await client.call_tool("start_workflow", s))["workflow_id"] for s in starts]
        ends = await asyncio.gather(*(_see_through(client, w) for w in wids))
        assert [e["status"] for e in ends] == ["completed"] * len(wids), [e.get("last_error") for e in ends]
        for wid in wids:
            events = [e["what"] for e in await orch.store.events(wid)]
            assert events[0] == "workflow.created"
            assert events[-1] == "workflow.completed", events
        # every outside job was submitted once, whichever master its workflow lives on
        submits = standins.task_service.submits_by_key
        assert submits
        assert set(submits.values()) == {1}, submits
        # the workflows' keys really are spread over the masters
        owners = {orch.store.client.get_node_from_key(orch.store.key(w)).port for w in wids}
        assert len(owners) > 1
        # every production counted against its project's quota on the quota slot's master, and gave its place back
        quotas = orch.service.quotas
        assert quotas is not None
        uses = await quotas.usage([s["project_id"] for s in starts], [])
        assert {(u.in_flight, u.starts_last_minute) for u in uses} == {(0, 1)}
        assert await quotas.top() == []


async def test_a_start_is_claimed_only_after_its_record_is_written(
    cluster: EmbeddedCluster, key_prefix: str
) -> None:
    """With the record's master slow to write (CLIENT PAUSE WRITE), an engine claiming the start at once
    still finds the record: the start is queued after the record pipeline, not alongside it (where the
    engine would read no record and drop the run)."""
    client = await open_redis(cluster.url)
    try:
        probe = WorkflowStore(client, prefix=key_prefix)
        queue_port = client.get_node_from_key(probe.queue_key).port  # type: ignore[union-attr]
        u = uuid.uuid4()
        while client.get_node_from_key(probe.key(f"wf-{u.hex[:16]}")).port == queue_port:  # type: ignore[union-attr]
            u = uuid.uuid4()
        wid = f"wf-{u.hex[:16]}"
        store = WorkflowStore(client, prefix=key_prefix, new_id=lambda: wid)
        await store.ensure_group()
        for port in cluster.ports:
            if port != queue_port:
                with redis.Redis(port=port) as node:
                    node.execute_command("CLIENT", "PAUSE", 300, "WRITE")
        creating = asyncio.create_task(store.create(
            project_id="p1", workflow="preview", brief="", options={}, created_by="t", correlation_id="c1"
        ))  # fmt: skip
        tickets = await store.claim("engine-1", 10, block_ms=5000)
        assert [t.workflow_id for t in tickets] == [wid]
        rec = await store.get(wid)
        assert rec is not None, "the start was claimable before its record existed"
        assert rec.status == "queued"
        created, fresh = await creating
        assert fresh
        assert created.id == wid
    finally:
        await client.aclose()
