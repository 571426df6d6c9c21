"""Workflow records, the run queue, the event log, decisions and change notifications in Redis.

Keys (``P`` is the configured prefix; ``{wid}`` is the hash tag that keeps one workflow in one slot):

    P:wf:{wid}              HASH    the workflow record (status, progress, pending decisions, ...)
    P:wf:{wid}:events       STREAM  the audit log: who, what, when, correlation id
    P:wf:{wid}:decisions    HASH    decision id -> recorded answer (first answer wins)
    P:wf:{wid}:jobs         HASH    idempotency key -> "<nonce>:<outside job id>[:forgotten]" (side effects
                                    at most once), and "result\0<key>\0<task id>" -> the job's result
    P:wf:{wid}:memo         HASH    agent results by step and agent (a cache of the run's own work)
    P:wf:{wid}:attempts     LIST    runs started and not yet ended (poison runs: server/engine/_attempts.py)
    P:wf:{wid}:budget       HASH    agent_executions, outside_jobs charged so far (budgets)
    P:idem:<project>:<key>  STRING  start_workflow idempotency key -> workflow id
    P:project:<pid>:wfs     ZSET    the project's workflows by creation time
    P:wfs                   ZSET    every workflow by creation time
    P:runs                  STREAM  the run queue, consumer group "workers"
    P:lease:{wid}           STRING  the instance running the workflow (expires unless renewed)
    channel P:changed:<wid>          a message per change, for notifications across instances
    channel P:control:<wid>          pause/cancel for the instance that runs the workflow
    channel P:job:{wid}:<task id>    a job's result arrived (wakes its waiter on any instance)

With a signer, every value a run reads is signed with its place (deployment, workflow id, what it is,
and its field, decision, step or job), so a value moved from another workflow or field fails: record
fields, decisions, job ids, job results and memo entries. A record missing a field fails too. The event
stream, the indexes, the queue and the lease are not signed: they steer no run (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, NamedTuple

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from adapters._integrity import Signer, place
from adapters._pipeliner import ScriptPipeliner
from adapters._quotas import QuotaStore
from adapters._redis import AnyRedis, ChannelHub, follow, translates_redis_errors
from adapters.errors import IntegrityError

__all__ = ["TERMINAL", "RunTicket", "Status", "StoreEvent", "WorkflowRecord", "WorkflowStore"]


class Status(StrEnum):
    """Where a workflow stands: the one vocabulary of workflow statuses (record, tools, tasks, board)."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING_DECISION = "waiting_decision"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
_JSON_FIELDS = ("options", "pending", "agents_running", "result", "services", "decided", "trace")
# Fields added after records existed: a record without one is not a removal (a present value is verified).
_MAY_BE_MISSING = frozenset({"trace"})
_GROUP = "workers"
# Returns {1, used} when counted, {0, used} when refused. The TTL keeps the counters no longer than
# the workflow's other keys (it is refreshed on every charge).
_CHARGE = """
local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[2])
if used + amount > tonumber(ARGV[3]) then
  return {0, used}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, used + amount}
"""
# Set a hash field only if it still holds exactly the value read: 1 when set. The values are signed by the
# caller, who verified what it read, so comparing bytes is comparing signed values.
_JOB_CAS = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
_RESULT = "result\x00"  # jobs-hash fields holding a job's result: result\0<step key>\0<task id>


def _now() -> float:
    return time.time()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class WorkflowRecord:
    """What the store knows of one workflow (the status a caller sees)."""

    id: str
    project_id: str
    workflow: str
    status: Status
    created_at: float
    updated_at: float
    created_by: str = ""
    brief: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    phase: str = ""
    step: str = ""
    percent: float = 0.0
    message: str = ""
    last_error: str = ""
    waiting_reason: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)
    agents_running: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    forked_from: str = ""
    control: str = ""
    correlation_id: str = ""
    # Where the run last stopped (its newest checkpoint, pending writes and how many signed values it held)
    # and the decisions taken since: a run refuses state that went missing behind these
    # (server/engine/_anchor.py).
    mark: str = ""
    decided: list[str] = field(default_factory=list)
    # The W3C context of the production's root span (every run of it is a child): steers nothing.
    trace: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> WorkflowRecord:
        """Decode a Redis hash into a record."""
        d = {_s(k): _s(v) for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in d:
                continue
            value: Any = d[name]
            if name in _JSON_FIELDS:
                if not value:
                    continue
                value = json.loads(value)
            elif name in {"created_at", "updated_at", "percent"}:
                value = float(value or 0)
            elif name == "status":
                value = Status(value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_hash(self) -> dict[str, str]:
        """Encode for HSET."""
        out: dict[str, str] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
        return out


class StoreEvent(NamedTuple):
    """One entry for a workflow's event stream."""

    what: str
    data: Mapping[str, Any] | None = None
    who: str = "system"
    correlation_id: str = ""


@dataclass(frozen=True)
class RunTicket:
    """One claimed entry of the run queue (`trace`: the W3C context of the request that queued it)."""

    entry_id: str
    workflow_id: str
    reason: str
    correlation_id: str
    trace: Mapping[str, str] = field(default_factory=dict)


@translates_redis_errors
class WorkflowStore:
    """Redis side of workflows: records, queue, events, decisions, jobs, notifications.

    Args:
        client: redis-py asyncio client (bytes responses).
        prefix: key prefix shared by every instance of one deployment.
        retention_seconds: how long a finished workflow's keys live.
        signer: signs every record field (and verifies it on read) when given.
        pipeliner: shares round trips of record updates with other script calls (the checkpointer's).
        new_id: makes the id of a new workflow (default ``wf-`` and 16 random hex digits).
        quotas: told of every status written (a workflow's place in its project's queue; its reservation is
            released when it ends).
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        prefix: str = "mo",
        retention_seconds: float = 30 * 86400,
        signer: Signer | None = None,
        pipeliner: ScriptPipeliner | None = None,
        new_id: Callable[[], str] | None = None,
        quotas: QuotaStore | None = None,
    ) -> None:
        self._new_id = new_id or (lambda: f"wf-{uuid.uuid4().hex[:16]}")
        self.quotas = quotas
        # redis-py's stubs type replies as unions of bytes/str/None/Awaitable; replies are bytes here.
        self.client: Any = client
        self.prefix = prefix
        self.retention_seconds = int(retention_seconds)
        self._transactional = not isinstance(client, RedisCluster)
        self.signer = signer
        self._pipeliner = pipeliner or ScriptPipeliner(client)
        # Job webhooks arrive on any instance; the waiting run hears of them here (start()/stop()).
        self.job_notices = ChannelHub(client, "jobs", patterns=[f"{prefix}:job:*"])
        self._update_script = client.register_script(
            (resources.files("adapters") / "lua" / "wf_update.lua").read_text()
        )
        self._charge_script = client.register_script(_CHARGE)
        self._cas_script = client.register_script(_JOB_CAS)

    def _enc(self, wid: str, fields: Mapping[str, str]) -> dict[str, str | bytes]:
        if self.signer is None:
            return dict(fields)
        return {k: self.signer.sign(v.encode(), place("record", wid, k)) for k, v in fields.items()}

    def _seal(self, value: str, *where: str) -> str | bytes:
        return value if self.signer is None else self.signer.sign(value.encode(), place(*where))

    def _open(self, raw: Any, *where: str) -> str:
        """A stored value checked against its place (with a signer).

        Raises:
            IntegrityError: changed, moved from another place, or unsigned.
        """
        blob = raw if isinstance(raw, bytes) else str(raw).encode()
        if self.signer is None:
            return blob.decode()
        try:
            return self.signer.verify(blob, place(*where)).decode()
        except IntegrityError as exc:
            msg = f"{where[0]} {where[2:]!r} of workflow {where[1]!r}: {exc}"
            raise IntegrityError(msg) from exc

    def _record(self, wid: str, raw: Mapping[Any, Any]) -> WorkflowRecord:
        """Decode (and, with a signer, verify) a record hash.

        Raises:
            IntegrityError: a field was changed, moved from another record, or removed behind the
                orchestrator's back.
        """
        if self.signer is None:
            return WorkflowRecord.from_hash(raw)
        fields = {}
        for k, v in raw.items():
            name = _s(k)
            fields[name] = self._open(v, "record", wid, name)
        missing = sorted(set(WorkflowRecord.__dataclass_fields__) - set(fields) - _MAY_BE_MISSING)
        if missing:
            msg = f"record of workflow {wid!r} lacks the fields {missing}: they were removed outside the orchestrator"
            raise IntegrityError(msg)
        return WorkflowRecord.from_hash(fields)

    # -- keys ---------------------------------------------------------------------------------

    def key(self, wid: str, suffix: str = "") -> str:
        """The key of a workflow, or of one of its parts (``events``, ``decisions``, ``jobs``)."""
        return f"{self.prefix}:wf:{{{wid}}}" + (f":{suffix}" if suffix else "")

    @property
    def queue_key(self) -> str:
        """The run queue stream."""
        return f"{self.prefix}:runs"

    def channel(self, wid: str) -> str:
        """The pub/sub channel announcing changes of one workflow."""
        return f"{self.prefix}:changed:{wid}"

    @property
    def control_pattern(self) -> str:
        """The pub/sub pattern of pause/cancel announcements (``P:control:<wid>``)."""
        return f"{self.prefix}:control:*"

    def lease_key(self, wid: str) -> str:
        """The lease of the instance running a workflow."""
        return f"{self.prefix}:lease:{{{wid}}}"

    # -- create, read -------------------------------------------------------------------------

    async def create(
        self,
        *,
        project_id: str,
        workflow: str,
        brief: str,
        options: dict[str, Any],
        created_by: str,
        correlation_id: str,
        idempotency_key: str | None = None,
        forked_from: str = "",
        enqueue: bool = True,
        wid: str | None = None,
        trace: Mapping[str, str] | None = None,
        queued_by: Mapping[str, str] | None = None,
    ) -> tuple[WorkflowRecord, bool]:
        """Create a workflow and enqueue its first run; with a known idempotency key return that one.

        Args:
            wid: the new workflow's id (`new_id()`), when the caller needed it before.
            trace: the W3C context of the production's root span, kept in the record.
            queued_by: the W3C context of the request, carried by the queue entry.

        Returns:
            The record, and whether it was created by this call.
        """
        wid = wid or self._new_id()
        if idempotency_key:
            earlier = await self._claim_idempotency_key(project_id, idempotency_key, wid)
            if earlier is not None:
                return earlier, False
        now = _now()
        rec = WorkflowRecord(id=wid, project_id=project_id, workflow=workflow, status=Status.QUEUED, created_at=now,
                             updated_at=now, created_by=created_by, brief=brief, options=options,
                             forked_from=forked_from, correlation_id=correlation_id, message="waiting for a worker",
                             trace=dict(trace or {}))  # fmt: skip
        pipe = self.client.pipeline(transaction=self._transactional)
        pipe.hset(self.key(wid), mapping=self._enc(wid, rec.to_hash()))
        pipe.zadd(f"{self.prefix}:project:{project_id}:wfs", {wid: now})
        pipe.zadd(f"{self.prefix}:wfs", {wid: now})
        self._event(pipe, wid, "workflow.created", created_by, correlation_id, workflow=workflow)
        start = self._entry_fields(wid, "start", correlation_id, queued_by)
        if self._transactional:  # MULTI/EXEC: an engine sees the start and the record together
            if enqueue:
                pipe.xadd(self.queue_key, start)
            pipe.publish(self.channel(wid), "created")
            await pipe.execute()
            return rec, True
        # A cluster pipeline sends each node its share concurrently: were the start in it, an engine could
        # claim it before the record's node had written the record, and drop the run. PUBLISH names no key,
        # so it has no node in a cluster pipeline either: both go after.
        await pipe.execute()
        if enqueue:
            await self.client.xadd(self.queue_key, start)
        await self.client.publish(self.channel(wid), "created")
        return rec, True

    def new_id(self) -> str:
        """A new workflow id (for a caller that needs it before `create`)."""
        return self._new_id()

    async def find_idempotent(self, project_id: str, key: str) -> WorkflowRecord | None:
        """The live workflow an earlier start of the project created with this idempotency key, if any."""
        existing = await self.client.get(f"{self.prefix}:idem:{project_id}:{key}")
        return await self.get(_s(existing)) if existing is not None else None

    async def statuses(self, wids: list[str]) -> dict[str, str | None]:
        """The status of each workflow (None: no record), read in one round trip.

        Raises:
            IntegrityError: a status was written or changed outside the orchestrator.
        """
        pipe = self.client.pipeline(transaction=False)
        for wid in wids:
            pipe.hget(self.key(wid), "status")
        raws = await pipe.execute()
        return {wid: (self._open(raw, "record", wid, "status") if raw is not None else None)
                for wid, raw in zip(wids, raws, strict=True)}  # fmt: skip

    async def _claim_idempotency_key(self, project_id: str, key: str, wid: str) -> WorkflowRecord | None:
        """Claim `key` for the new workflow `wid`; the workflow an earlier call created with it, if it lives."""
        idem = f"{self.prefix}:idem:{project_id}:{key}"
        if await self.client.set(idem, wid, nx=True, ex=self.retention_seconds):
            return None
        existing = await self.client.get(idem)
        if existing is not None:
            rec = await self.get(_s(existing))
            if rec is not None:
                return rec
        # The key outlived its workflow: take it over.
        await self.client.set(idem, wid, ex=self.retention_seconds)
        return None

    async def get(self, wid: str) -> WorkflowRecord | None:
        """The record, or None for an unknown workflow."""
        raw = await self._pipeliner.command("HGETALL", self.key(wid))
        return self._record(wid, raw) if raw else None

    async def trace_of(self, wid: str) -> dict[str, str]:
        """The W3C context of the workflow's production span (``{}``: none, or no such workflow).

        Raises:
            IntegrityError: the field was written or changed outside the orchestrator.
        """
        raw = await self.client.hget(self.key(wid), "trace")
        if raw is None:
            return {}
        value = json.loads(self._open(raw, "record", wid, "trace") or "{}")
        return value if isinstance(value, dict) else {}

    async def list_workflows(
        self, *, project_ids: list[str] | None, status: str | None, cursor: float | None, limit: int
    ) -> tuple[list[WorkflowRecord], float | None]:
        """Workflows newest first, optionally of some projects and one status; cursor pages on."""
        upper = f"({cursor}" if cursor is not None else "+inf"
        keys = (
            [f"{self.prefix}:project:{p}:wfs" for p in project_ids]
            if project_ids is not None
            else [f"{self.prefix}:wfs"]
        )
        out: list[WorkflowRecord] = []
        next_cursor: float | None = None
        scan_upper = upper
        while len(out) < limit:
            batch: list[tuple[str, float]] = []
            for k in keys:
                rows = await self.client.zrevrangebyscore(
                    k, scan_upper, "-inf", start=0, num=limit, withscores=True
                )
                batch += [(_s(m), float(s)) for m, s in rows]
            if not batch:
                next_cursor = None
                break
            batch.sort(key=lambda r: r[1], reverse=True)
            batch = batch[:limit]
            pipe = self.client.pipeline(transaction=False)
            for wid, _ in batch:
                pipe.hgetall(self.key(wid))
            raws = await pipe.execute()
            for (wid, score), raw in zip(batch, raws, strict=True):
                next_cursor = score
                if not raw:
                    continue
                rec = self._record(wid, raw)
                if status and rec.status != status:
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
            scan_upper = f"({next_cursor}"
            if len(batch) < limit:
                if len(out) < limit:
                    next_cursor = None
                break
        return out, next_cursor

    # -- update -------------------------------------------------------------------------------

    @staticmethod
    def _entry(what: str, who: str, correlation_id: str, data: Mapping[str, Any] | None) -> dict[str, str]:
        return {
            "what": what,
            "who": who or "system",
            "when": f"{_now():.6f}",
            "cid": correlation_id,
            "data": json.dumps(dict(data or {}), default=str),
        }

    def _event(self, pipe: Any, wid: str, what: str, who: str, correlation_id: str, **data: Any) -> None:
        pipe.xadd(self.key(wid, "events"), self._entry(what, who, correlation_id, data), maxlen=10_000,
                  approximate=True)  # fmt: skip

    async def update(
        self,
        wid: str,
        fields: Mapping[str, Any],
        *,
        event: str | None = None,
        who: str = "system",
        correlation_id: str = "",
        event_data: Mapping[str, Any] | None = None,
    ) -> None:
        """Change fields of the record, append an event if given, and announce the change."""
        events = [StoreEvent(event, event_data, who, correlation_id)] if event else []
        await self.update_many(wid, fields, events)

    async def update_many(self, wid: str, fields: Mapping[str, Any], events: Sequence[StoreEvent]) -> None:
        """Change fields, append events in order and announce it, atomically in one script call.

        The call shares its round trip with concurrent script calls (checkpoints, other workflows).
        The notice published is ``<last event>|<status>|<percent>``: waiters learn what they need
        without reading the record.
        """
        enc: dict[str, str] = {"updated_at": str(_now())}
        for k, v in fields.items():
            enc[k] = json.dumps(v) if k in _JSON_FIELDS else str(v)
        args: list[Any] = []
        for k, v in self._enc(wid, enc).items():
            args += [k, v]
        for e in events:
            entry = self._entry(e.what, e.who, e.correlation_id, e.data)
            args.append(len(entry))
            for k, v in entry.items():
                args += [k, v]
        ended = fields.get("status") in TERMINAL
        keys = [self.key(wid), self.key(wid, "events")]
        if ended:
            keys += [self.key(wid, suffix) for suffix in ("decisions", "jobs", "memo")]
        last = events[-1].what if events else "updated"
        note = f"{last}|{fields.get('status', '')}|{fields.get('percent', '')}"
        head = [self.channel(wid), note, self.retention_seconds if ended else 0, len(enc)]
        updated = self._pipeliner.submit(self._update_script, keys, head + args)
        if self.quotas is not None and "status" in fields:
            # Submitted beside the update: the same round trip (another slot on a cluster: its own call).
            reported = self.quotas.status_changed(wid, queued=fields["status"] == Status.QUEUED, ended=ended)
            try:
                await updated
            finally:
                await reported
        else:
            await updated

    async def events(self, wid: str, *, after: str = "", count: int = 1000) -> list[dict[str, Any]]:
        """The audit log of a workflow, oldest first (only the entries after the id `after`, when given):
        ``id``, ``what``, ``who``, ``when``, ``correlation_id`` and ``data`` of each."""
        rows = await self.client.xrange(
            self.key(wid, "events"), min=f"({after}" if after else "-", count=count
        )
        out = []
        for entry_id, raw in rows:
            d = {_s(k): _s(v) for k, v in raw.items()}
            try:
                data = json.loads(d.get("data") or "{}")
            except ValueError:
                data = {}
            out.append({"id": _s(entry_id), "what": d.get("what", ""), "who": d.get("who", ""),
                        "when": float(d.get("when", 0)), "correlation_id": d.get("cid", ""),
                        "data": data if isinstance(data, dict) else {}})  # fmt: skip
        return out

    async def last_event_id(self, wid: str) -> str:
        """The id of the workflow's newest event ("" when it has none)."""
        last = await self.client.xrevrange(self.key(wid, "events"), count=1)
        return _s(last[0][0]) if last else ""

    # -- decisions ----------------------------------------------------------------------------

    async def record_decision(
        self, wid: str, decision_id: str, answer: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """Record the first answer to a decision (signed with its workflow and decision id).

        Returns:
            Whether it was recorded now, and the answer that stands.

        Raises:
            IntegrityError: the answer standing in Redis fails its signature.
        """
        key = self.key(wid, "decisions")
        if await self._pipeliner.command(
            "HSETNX", key, decision_id, self._seal(json.dumps(answer), "decision", wid, decision_id)
        ):
            return True, answer
        stored = await self._pipeliner.command("HGET", key, decision_id)
        return False, json.loads(self._open(stored, "decision", wid, decision_id)) if stored else answer

    async def decisions(self, wid: str) -> dict[str, dict[str, Any]]:
        """Every recorded answer by decision id.

        Raises:
            IntegrityError: an answer was written or changed outside the orchestrator.
        """
        raw = await self._pipeliner.command("HGETALL", self.key(wid, "decisions"))
        return {_s(k): json.loads(self._open(v, "decision", wid, _s(k))) for k, v in raw.items()}

    async def verify_workflow(self, wid: str) -> dict[str, int]:
        """Check every signed value a run of the workflow may read: decisions, jobs, job results, memo.

        A run calls this before it acts, so a value planted or changed anywhere in the workflow stops
        it at once, not when (or if) a later step happens to read it.

        Returns:
            How many decisions, jobs, job results and memo entries there are (none is ever removed
            while the workflow lives, so fewer than before means some were deleted).

        Raises:
            IntegrityError: a value was written, changed or moved outside the orchestrator.
        """
        pipe = self.client.pipeline(transaction=False)
        for suffix in ("decisions", "jobs", "memo"):
            pipe.hgetall(self.key(wid, suffix))
        decisions, jobs, memo = await pipe.execute()
        results = [_s(k) for k in jobs if _s(k).startswith(_RESULT)]
        counts = {"decisions": len(decisions), "jobs": len(jobs) - len(results), "memo": len(memo),
                  "results": len(results)}  # fmt: skip
        if self.signer is None:
            return counts
        for k, v in decisions.items():
            self._open(v, "decision", wid, _s(k))
        for k, v in memo.items():
            self._open(v, "memo", wid, _s(k))
        for k, v in jobs.items():
            name = _s(k)
            if name.startswith(_RESULT):
                step, _, task_id = name[len(_RESULT) :].partition("\x00")
                self._open(v, "job-result", wid, step, task_id)
            else:
                self._job_value(wid, name, v)
        return counts

    # -- memo ---------------------------------------------------------------------------------

    async def memo_get(self, wid: str, key: str) -> Any | None:
        """A memoised agent result of the workflow, or None.

        Raises:
            IntegrityError: the entry was written or changed outside the orchestrator.
        """
        raw = await self._pipeliner.command("HGET", self.key(wid, "memo"), key)
        return json.loads(self._open(raw, "memo", wid, key)) if raw else None

    async def memo_put(self, wid: str, key: str, value: Any) -> None:
        """Memoise an agent result (signed with its workflow and key; it expires with the workflow)."""
        await self._pipeliner.command(
            "HSET", self.key(wid, "memo"), key, self._seal(json.dumps(value, default=str), "memo", wid, key)
        )

    # -- outside jobs -------------------------------------------------------------------------

    async def job_entry(self, wid: str, idempotency_key: str) -> tuple[str, str] | None:
        """The (nonce, job id) a step awaits; the id is "" while the job is being submitted.

        None when the step has no job, or its job failed and was forgotten (a retry submits anew).

        Raises:
            IntegrityError: the entry was written or changed outside the orchestrator.
        """
        v = await self._pipeliner.command("HGET", self.key(wid, "jobs"), idempotency_key)
        if v is None:
            return None
        nonce, job_id, forgotten = self._job_value(wid, idempotency_key, v)
        return None if forgotten else (nonce, job_id)

    async def job_entry_raw(self, wid: str, idempotency_key: str) -> tuple[bytes, str, str] | None:
        """The step's job entry as stored (for `replace_job`), with its nonce and job id; None when the step has
        no job or its job was forgotten.

        Raises:
            IntegrityError: the entry was written or changed outside the orchestrator.
        """
        raw = await self.client.hget(self.key(wid, "jobs"), idempotency_key)
        if raw is None:
            return None
        nonce, job_id, forgotten = self._job_value(wid, idempotency_key, raw)
        return None if forgotten else (raw if isinstance(raw, bytes) else str(raw).encode(), nonce, job_id)

    async def replace_job(self, wid: str, idempotency_key: str, expected: bytes, nonce: str) -> bool:
        """Make the step's job "being submitted with `nonce`" only if its entry is still exactly `expected`
        (compare-and-set): of the runs that saw the same lost job, one wins."""
        value = self._seal(f"{nonce}:", "job", wid, idempotency_key)
        return bool(
            await self._cas_script(keys=[self.key(wid, "jobs")], args=[idempotency_key, expected, value])
        )

    async def job_submission(self, wid: str, idempotency_key: str) -> tuple[str, str, bool] | None:
        """The step's latest submission as (nonce, job id, forgotten), forgotten ones included.

        A job is forgotten when its step gave up on it (it failed, or never reported back); its webhook
        may still come, and is then still this step's.

        Raises:
            IntegrityError: the entry was written or changed outside the orchestrator.
        """
        v = await self.client.hget(self.key(wid, "jobs"), idempotency_key)
        return None if v is None else self._job_value(wid, idempotency_key, v)

    async def job_ids(self, wid: str) -> set[str]:
        """Every outside job id the workflow ever recorded (forgotten ones included).

        Raises:
            IntegrityError: an entry was written or changed outside the orchestrator.
        """
        return self._ids_of(wid, await self.client.hgetall(self.key(wid, "jobs")))

    async def project_job_ids(self, project_id: str, *, workflows: int = 200) -> set[str]:
        """Every outside job id recorded by the project's newest `workflows` workflows.

        Raises:
            IntegrityError: an entry was written or changed outside the orchestrator.
        """
        wids = [
            _s(w)
            for w in await self.client.zrevrange(f"{self.prefix}:project:{project_id}:wfs", 0, workflows - 1)
        ]
        pipe = self.client.pipeline(transaction=False)
        for wid in wids:
            pipe.hgetall(self.key(wid, "jobs"))
        ids: set[str] = set()
        for wid, raw in zip(wids, await pipe.execute(), strict=True):
            ids |= self._ids_of(wid, raw)
        return ids

    def _ids_of(self, wid: str, raw: Mapping[Any, Any]) -> set[str]:
        ids = set()
        for k, v in raw.items():
            name = _s(k)
            if name.startswith(_RESULT):
                ids.add(name.rsplit("\x00", 1)[-1])
            else:
                ids.add(self._job_value(wid, name, v)[1])
        ids.discard("")
        return ids

    async def step_results(self, wid: str, idempotency_key: str) -> dict[str, dict[str, Any]]:
        """The results that arrived for a step, by job id (more than one only after an uncertain submit).

        Raises:
            IntegrityError: a result was written or changed outside the orchestrator.
        """
        head = f"{_RESULT}{idempotency_key}\x00"
        raw = await self.client.hgetall(self.key(wid, "jobs"))
        out = {}
        for k, v in raw.items():
            name = _s(k)
            if name.startswith(head):
                task_id = name[len(head) :]
                out[task_id] = json.loads(self._open(v, "job-result", wid, idempotency_key, task_id))
        return out

    def _job_value(self, wid: str, idempotency_key: str, raw: Any) -> tuple[str, str, bool]:
        nonce, _, rest = self._open(raw, "job", wid, idempotency_key).partition(":")
        job_id, _, state = rest.partition(":")
        return nonce, job_id, state == "forgotten"

    async def job_for(self, wid: str, idempotency_key: str) -> str | None:
        """The outside job already submitted for this step, if its id is known."""
        entry = await self.job_entry(wid, idempotency_key)
        return entry[1] if entry is not None and entry[1] else None

    async def remember_job(self, wid: str, idempotency_key: str, job_id: str, nonce: str = "") -> None:
        """Record the outside job of a step (``job_id`` "" before submitting, so its webhook is expected)."""
        value = self._seal(f"{nonce}:{job_id}", "job", wid, idempotency_key)
        await self._pipeliner.command("HSET", self.key(wid, "jobs"), idempotency_key, value)

    async def forget_job(self, wid: str, idempotency_key: str) -> None:
        """Mark a step's job as failed (a retry submits anew); the entry stays, so entries never go missing."""
        v = await self.client.hget(self.key(wid, "jobs"), idempotency_key)
        if v is None:
            return
        nonce, job_id, _ = self._job_value(wid, idempotency_key, v)
        value = self._seal(f"{nonce}:{job_id}:forgotten", "job", wid, idempotency_key)
        await self.client.hset(self.key(wid, "jobs"), idempotency_key, value)

    def _job_channel(self, wid: str, task_id: str) -> str:
        return f"{self.prefix}:job:{{{wid}}}:{task_id}"

    @staticmethod
    def _result_field(idempotency_key: str, task_id: str) -> str:
        return f"{_RESULT}{idempotency_key}\x00{task_id}"

    async def put_job_result(
        self, wid: str, idempotency_key: str, task_id: str, result: dict[str, Any]
    ) -> bool:
        """Store a job's result (from the webhook) and wake its waiter; False if already stored.

        The result is kept in the workflow's jobs hash (it lives and expires with the workflow), signed
        with its step and job, so a webhook can only ever feed the workflow and step its token names.
        """
        field = self._result_field(idempotency_key, task_id)
        value = self._seal(json.dumps(result), "job-result", wid, idempotency_key, task_id)
        stored = await self._pipeliner.command("HSETNX", self.key(wid, "jobs"), field, value)
        if stored:
            await self.client.publish(self._job_channel(wid, task_id), "done")
        return bool(stored)

    async def job_result(self, wid: str, idempotency_key: str, task_id: str) -> dict[str, Any] | None:
        """A job's result if its webhook has arrived.

        Raises:
            IntegrityError: the result was written or changed outside the orchestrator.
        """
        raw = await self._pipeliner.command(
            "HGET", self.key(wid, "jobs"), self._result_field(idempotency_key, task_id)
        )
        return json.loads(self._open(raw, "job-result", wid, idempotency_key, task_id)) if raw else None

    async def wait_job_result(
        self, wid: str, idempotency_key: str, task_id: str, wait_seconds: float
    ) -> None:
        """Sleep until the job's webhook arrives or `wait_seconds` pass (needs `job_notices` started)."""
        with self.job_notices.watch(self._job_channel(wid, task_id)) as notices:
            if await self._pipeliner.command(
                "HEXISTS", self.key(wid, "jobs"), self._result_field(idempotency_key, task_id)
            ):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notices.get(), wait_seconds)

    async def jobs(self, wid: str) -> dict[str, str]:
        """Every outside job of the workflow that a step awaits, by idempotency key.

        Raises:
            IntegrityError: an entry was written or changed outside the orchestrator.
        """
        raw = await self.client.hgetall(self.key(wid, "jobs"))
        out = {}
        for k, v in raw.items():
            name = _s(k)
            if name.startswith(_RESULT):
                continue
            _, job_id, forgotten = self._job_value(wid, name, v)
            if job_id and not forgotten:
                out[name] = job_id
        return out

    async def follow_control(self, on_control: Callable[[str, str], object]) -> None:
        """Hear every instance's pause/cancel announcements, as ``on_control(workflow id, what)``, until
        cancelled (reconnecting after any failure)."""

        def on_message(channel: str, what: str) -> None:
            on_control(channel.rsplit(":", 1)[1], what)

        await follow(self.client, on_message, patterns=[self.control_pattern], name="control")

    async def publish_control(self, wid: str, what: str) -> None:
        """Announce a pause or cancel to whichever instance runs the workflow."""
        await self.client.publish(f"{self.prefix}:control:{wid}", what)

    # -- run attempts (poison runs) -------------------------------------------------------------

    async def begin_attempt(self, wid: str, entry: str) -> list[str]:
        """Append a run's start to the workflow's attempts; returns every attempt not ended, this one last."""
        key = self.key(wid, "attempts")
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, entry)
        pipe.expire(key, self.retention_seconds)
        pipe.lrange(key, 0, -1)
        *_, rows = await pipe.execute()
        return [_s(r) for r in rows]

    async def keep_last_attempt(self, wid: str) -> None:
        """Forget every attempt but the newest (the current run finished a step)."""
        await self._pipeliner.command("LTRIM", self.key(wid, "attempts"), -1, -1)

    async def clear_attempts(self, wid: str) -> None:
        """Forget the workflow's attempts (its run ended with its process alive)."""
        await self._pipeliner.command("DEL", self.key(wid, "attempts"))

    # -- budgets ------------------------------------------------------------------------------

    async def charge_budget(self, wid: str, budget: str, amount: int, limit: int) -> tuple[bool, int]:
        """Count `amount` of `budget` unless that goes over `limit` (atomic); returns (counted, used now)."""
        reply = await self._pipeliner.call(
            self._charge_script, [self.key(wid, "budget")], [budget, amount, limit, self.retention_seconds]
        )
        return bool(int(reply[0])), int(reply[1])

    async def budget_used(self, wid: str) -> dict[str, int]:
        """What a workflow has charged to its budgets so far."""
        raw = await self.client.hgetall(self.key(wid, "budget"))
        return {_s(k): int(v) for k, v in raw.items()}

    # -- the deployment -----------------------------------------------------------------------

    async def deployment_secret(self, name: str) -> bytes:
        """A random secret shared by every instance of the deployment (``P:<name>``), made by the first."""
        key = f"{self.prefix}:{name}"
        await self.client.set(key, secrets.token_hex(32), nx=True)
        stored = await self.client.get(key)
        return stored if isinstance(stored, bytes) else str(stored or "").encode()

    async def ping(self) -> bool:
        """True when Redis answers."""
        return bool(await self.client.ping())

    # -- run queue ----------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the run queue's consumer group if it does not exist."""
        try:
            await self.client.xgroup_create(self.queue_key, _GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @staticmethod
    def _entry_fields(
        wid: str, reason: str, correlation_id: str, trace: Mapping[str, str] | None
    ) -> dict[str, str]:
        entry = {"wid": wid, "reason": reason, "cid": correlation_id}
        if trace:
            entry["tp"] = json.dumps(dict(trace))
        return entry

    async def enqueue(
        self, wid: str, reason: str, correlation_id: str, *, trace: Mapping[str, str] | None = None
    ) -> None:
        """Queue a run of the workflow (start, resume, retry); `trace`: the W3C context of who queued it."""
        fields = self._entry_fields(wid, reason, correlation_id, trace)
        await self._pipeliner.command("XADD", self.queue_key, "*", *(x for kv in fields.items() for x in kv))

    @staticmethod
    def _tickets(rows: Any) -> list[RunTicket]:
        out = []
        for entry_id, raw in rows:
            if raw is None:
                continue
            d = {_s(k): _s(v) for k, v in raw.items()}
            try:
                trace = json.loads(d["tp"]) if "tp" in d else {}
            except ValueError:
                trace = {}
            out.append(RunTicket(_s(entry_id), d.get("wid", ""), d.get("reason", ""), d.get("cid", ""),
                                 trace if isinstance(trace, dict) else {}))  # fmt: skip
        return out

    async def claim(self, consumer: str, count: int, block_ms: int) -> list[RunTicket]:
        """New runs for this consumer (blocks up to block_ms)."""
        resp = await self.client.xreadgroup(
            _GROUP, consumer, {self.queue_key: ">"}, count=count, block=block_ms
        )
        out: list[RunTicket] = []
        for _, rows in resp or []:
            out += self._tickets(rows)
        return out

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[RunTicket]:
        """Runs whose holder stopped renewing them for min_idle_ms (a dead instance)."""
        resp = await self.client.xautoclaim(self.queue_key, _GROUP, consumer, min_idle_ms, "0-0", count=count)
        return self._tickets(resp[1])

    async def renew(self, consumer: str, tickets: list[RunTicket], lease_ms: int) -> None:
        """Heartbeat: reset the idle time of held runs and extend their leases."""
        if not tickets:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.xclaim(self.queue_key, _GROUP, consumer, 0, [t.entry_id for t in tickets], justid=True)
        for t in tickets:
            pipe.set(self.lease_key(t.workflow_id), consumer, px=lease_ms)
        await pipe.execute()

    async def take_lease(self, wid: str, consumer: str, lease_ms: int) -> bool:
        """Own the workflow's lease unless another live instance holds it."""
        if await self._pipeliner.command("SET", self.lease_key(wid), consumer, "NX", "PX", lease_ms):
            return True
        holder = await self._pipeliner.command("GET", self.lease_key(wid))
        return holder is not None and _s(holder) == consumer

    async def finish(self, ticket: RunTicket, consumer: str) -> None:
        """Acknowledge a run and drop the lease if it is ours."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(self.queue_key, _GROUP, ticket.entry_id)
        pipe.xdel(self.queue_key, ticket.entry_id)
        await pipe.execute()
        holder = await self.client.get(self.lease_key(ticket.workflow_id))
        if holder is not None and _s(holder) == consumer:
            await self.client.delete(self.lease_key(ticket.workflow_id))

    async def hand_back(
        self, ticket: RunTicket, consumer: str, *, trace: Mapping[str, str] | None = None
    ) -> None:
        """Give a held run to any instance now: a fresh queue entry (carrying `trace`, the W3C context of the run
        that gave it back), the held one acknowledged.

        The lease goes first: an instance that claims the fresh entry a moment later must find the
        workflow free, not wait a lease out. Should this process die between the steps, the held
        entry is still unacknowledged and is reclaimed as any dead instance's is.
        """
        holder = await self.client.get(self.lease_key(ticket.workflow_id))
        if holder is not None and _s(holder) == consumer:
            await self.client.delete(self.lease_key(ticket.workflow_id))
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            self.queue_key,
            self._entry_fields(ticket.workflow_id, "handed_back", ticket.correlation_id, trace),
        )
        pipe.xack(self.queue_key, _GROUP, ticket.entry_id)
        pipe.xdel(self.queue_key, ticket.entry_id)
        await pipe.execute()

    async def queue_depth(self) -> int:
        """Entries waiting or held in the run queue."""
        return int(await self.client.xlen(self.queue_key))
