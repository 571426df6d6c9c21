"""A LangGraph checkpoint saver on plain Redis (>= 6.2, Valkey, Redis Cluster), no modules.

Layout: every key of a thread starts with ``<prefix>:{<thread_id>}:`` so one thread lives in one
cluster slot, and there is no global key at all:

    ns            SET   the thread's checkpoint namespaces
    ids:<ns>      ZSET  checkpoint ids (score 0, ordered by id; ids are uuid6, time-ordered)
    cp:<ns>       HASH  checkpoint id -> record (blob references + checkpoint, metadata, parent)
    bl:<ns>       HASH  "<channel>\\0<version>" -> serialised channel value (written once per version)
    wi:<ns>       ZSET  "<checkpoint_id>\\0<task_id>\\0<idx>" (lexical index of pending writes)
    wv:<ns>       HASH  same member -> serialised write

Each put and each put_writes is one Lua script call: one round trip, atomic under concurrent
writers, with the optional TTL refreshed on every key of the thread inside the same script.

With a `Signer`, every stored value is signed with its place: a record with its thread, namespace,
checkpoint id and blob references (its parent id is in the signed body); a blob with its thread,
namespace, channel and version; a write with its thread, namespace, checkpoint, task and index. A
referenced blob or an indexed write that is missing fails like a changed one.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import resources
from typing import Any

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.commands.core import AsyncScript

from adapters._integrity import Signer, place
from adapters._pipeliner import ScriptPipeliner
from adapters._redis import AnyRedis, translates_redis_errors
from adapters.errors import IntegrityError

__all__ = ["RedisCheckpointSaver"]

_SEP = b"\x00"
_LIST_PAGE = 32


def _load_script(name: str) -> str:
    pkg = resources.files("adapters") / "lua"
    common = (pkg / "_common.lua").read_text()
    return common + "\n" + (pkg / f"{name}.lua").read_text()


def _typed(value: tuple[str, bytes]) -> bytes:
    return value[0].encode() + _SEP + value[1]


def _untyped(raw: bytes) -> tuple[str, bytes]:
    kind, _, data = raw.partition(_SEP)
    return kind.decode(), data


def _refs_prefix(fields: list[bytes]) -> bytes:
    body = b"".join(str(len(f)).encode() + b":" + f for f in fields)
    return str(len(body)).encode() + b":" + body


def _split_record(rec: bytes) -> tuple[list[bytes], bytes, bytes]:
    """The references, the raw prefix holding them, and the rest of a record."""
    colon = rec.index(b":")
    n = int(rec[:colon])
    body, rest = rec[colon + 1 : colon + 1 + n], rec[colon + 1 + n :]
    refs: list[bytes] = []
    pos = 0
    while pos < len(body):
        c = body.index(b":", pos)
        ln = int(body[pos:c])
        refs.append(body[c + 1 : c + 1 + ln])
        pos = c + 1 + ln
    return refs, rec[: colon + 1 + n], rest


def _blob_field(channel: str, version: Any) -> bytes:
    return channel.encode() + _SEP + str(version).encode()


@translates_redis_errors
class RedisCheckpointSaver(BaseCheckpointSaver[str]):
    """Async checkpoint saver on plain Redis; see the module docstring for the layout.

    Args:
        client: a redis-py asyncio client (``Redis`` or ``RedisCluster``), ``decode_responses=False``.
        prefix: key prefix, so several savers (or tests) can share one Redis.
        ttl_seconds: if set, every key of a thread expires this long after the thread's last write.
        serde: LangGraph serializer (e.g. an ``EncryptedSerializer``); defaults to JsonPlus.
        pipeliner: shares round trips with other script calls on the same client (default: its own).
        signer: signs every record, blob and write with its place, and verifies them on read.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        prefix: str = "mo:cp",
        ttl_seconds: int | None = None,
        serde: SerializerProtocol | None = None,
        pipeliner: ScriptPipeliner | None = None,
        signer: Signer | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.signer = signer
        if "{" in prefix or "}" in prefix:
            msg = f"checkpoint key prefix {prefix!r} must not contain '{{' or '}}' (used as hash tags)"
            raise ValueError(msg)
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = int(ttl_seconds or 0)
        self._put = client.register_script(_load_script("put"))
        self._put_writes = client.register_script(_load_script("put_writes"))
        self._get = client.register_script(_load_script("get"))
        self._list = client.register_script(_load_script("list"))
        self._delete = client.register_script(_load_script("delete_thread"))
        self._prune = client.register_script(_load_script("prune"))
        self._pipeliner = pipeliner or ScriptPipeliner(client)

    # -- keys ---------------------------------------------------------------------------------

    def _base(self, thread_id: str) -> str:
        return f"{self.prefix}:{{{thread_id}}}:"

    def _ns_key(self, thread_id: str) -> str:
        return self._base(thread_id) + "ns"

    async def _call(self, script: AsyncScript, thread_id: str, args: list[Any]) -> Any:
        return await self._pipeliner.call(script, [self._ns_key(thread_id)], [self._base(thread_id), *args])

    # -- signatures ---------------------------------------------------------------------------

    def _seal(self, data: bytes, *where: str | bytes) -> bytes:
        return data if self.signer is None else self.signer.sign(data, place(*where))

    def _open(self, blob: bytes, *where: str | bytes) -> bytes:
        if self.signer is None:
            return blob
        try:
            return self.signer.verify(blob, place(*where))
        except IntegrityError as exc:
            msg = f"checkpoint {where[0]!r} of thread {where[1]!r} (namespace {where[2]!r}, {where[3]!r}): {exc}"
            raise IntegrityError(msg) from exc

    @staticmethod
    def _write_place(thread_id: str, ns: str, member: bytes) -> tuple[str, str, str, bytes]:
        return "write", thread_id, ns, member

    # -- versions -----------------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Monotonic string versions with a random tiebreak, as InMemorySaver makes them."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"  # noqa: S311

    # -- write --------------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, its new channel values and metadata in one round trip."""
        conf = config["configurable"]
        thread_id: str = conf["thread_id"]
        checkpoint_ns: str = conf.get("checkpoint_ns", "")
        parent_id: str | None = conf.get("checkpoint_id")
        cp = checkpoint.copy()
        values: dict[str, Any] = cp.pop("channel_values")  # type: ignore[misc]
        blob_args: list[bytes] = []
        for channel, version in new_versions.items():
            if channel in values:
                field = _blob_field(channel, version)
                typed = _typed(self.serde.dumps_typed(values[channel]))
                blob_args += [field, self._seal(typed, "blob", thread_id, checkpoint_ns, field)]
        # Only channels holding a value are referenced, so a referenced blob that is missing was removed.
        versions = checkpoint["channel_versions"]
        refs = [_blob_field(ch, ver) for ch, ver in versions.items() if ch in values or self.signer is None]
        cp_t, cp_b = self.serde.dumps_typed(cp)
        md_t, md_b = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        body = ormsgpack.packb([cp_t, cp_b, md_t, md_b, parent_id])
        prefix = _refs_prefix(refs)
        record = prefix + self._seal(body, "record", thread_id, checkpoint_ns, checkpoint["id"], prefix)
        await self._call(
            self._put,
            thread_id,
            [checkpoint_ns, checkpoint["id"], record, self.ttl_seconds, *blob_args],
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes against a checkpoint in one round trip."""
        conf = config["configurable"]
        thread_id: str = conf["thread_id"]
        checkpoint_ns: str = conf.get("checkpoint_ns", "")
        checkpoint_id: str = conf["checkpoint_id"]
        args: list[Any] = [checkpoint_ns, self.ttl_seconds]
        for idx, (channel, value) in enumerate(writes):
            widx = WRITES_IDX_MAP.get(channel, idx)
            member = f"{checkpoint_id}\x00{task_id}\x00{widx}".encode()
            v_t, v_b = self.serde.dumps_typed(value)
            packed = ormsgpack.packb([task_id, channel, v_t, v_b, task_path, widx])
            args += [member, self._seal(packed, *self._write_place(thread_id, checkpoint_ns, member)),
                     "1" if widx < 0 else "0"]  # fmt: skip
        await self._call(self._put_writes, thread_id, args)

    # -- read ---------------------------------------------------------------------------------

    def _tuple(self, thread_id: str, checkpoint_ns: str, loaded: list[Any]) -> CheckpointTuple:
        raw_id, rec, blob_values, write_values, *rest = loaded
        members: list[bytes] = rest[0] if rest else []
        checkpoint_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        refs, prefix, sealed = _split_record(rec)
        body = self._open(sealed, "record", thread_id, checkpoint_ns, checkpoint_id, prefix)
        cp_t, cp_b, md_t, md_b, parent_id = ormsgpack.unpackb(body)
        checkpoint: Checkpoint = self.serde.loads_typed((cp_t, cp_b))
        channel_values: dict[str, Any] = {}
        for ref, raw in zip(refs, blob_values, strict=True):
            if raw is None:
                if self.signer is not None:
                    msg = f"checkpoint {checkpoint_id} of thread {thread_id!r} references {ref!r}, which is missing"
                    raise IntegrityError(msg)
                continue
            channel = ref.partition(_SEP)[0].decode()
            typed = self._open(raw, "blob", thread_id, checkpoint_ns, ref)
            channel_values[channel] = self.serde.loads_typed(_untyped(typed))
        pending: list[tuple[str, str, str, Any, int]] = []
        for i, raw in enumerate(write_values):
            if raw is None:
                if self.signer is not None:
                    msg = f"a pending write of checkpoint {checkpoint_id} of thread {thread_id!r} is missing"
                    raise IntegrityError(msg)
                continue
            packed = (
                raw
                if self.signer is None
                else self._open(raw, *self._write_place(thread_id, checkpoint_ns, members[i]))
            )
            w_task, w_channel, w_t, w_b, w_path, w_idx = ormsgpack.unpackb(packed)
            pending.append((w_path, w_task, w_channel, (w_t, w_b), w_idx))
        pending.sort(key=lambda w: writes_sort_key(w[0], w[1], w[4]))
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint={**checkpoint, "channel_values": channel_values},
            metadata=self.serde.loads_typed((md_t, md_b)),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": checkpoint_ns,
                        "checkpoint_id": parent_id,
                    }
                }
                if parent_id
                else None
            ),
            pending_writes=[(t, c, self.serde.loads_typed(v)) for _, t, c, v, _ in pending],
        )

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``checkpoint_id``, or the thread's latest in its namespace."""
        conf = config["configurable"]
        thread_id: str = conf["thread_id"]
        checkpoint_ns: str = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config) or ""
        loaded = await self._call(self._get, thread_id, [checkpoint_ns, checkpoint_id])
        if not loaded:
            return None
        return self._tuple(thread_id, checkpoint_ns, loaded)

    async def has_thread(self, thread_id: str) -> bool:
        """Whether the thread has any checkpoint (read without verifying anything)."""
        return bool(await self.client.exists(self._ns_key(thread_id)))

    async def indexes_namespace(self, thread_id: str, checkpoint_ns: str = "") -> bool:
        """Whether the thread's namespace index lists `checkpoint_ns` (a removed entry hides its checkpoints)."""
        return bool(await self.client.sismember(self._ns_key(thread_id), checkpoint_ns))

    async def _namespaces(self, thread_id: str) -> list[str]:
        members = await self.client.smembers(self._ns_key(thread_id))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def _threads(self) -> list[str]:
        head, tail = f"{self.prefix}:{{", "}:ns"
        found: set[str] = set()
        async for key in self.client.scan_iter(match=f"{self.prefix}:{{*}}:ns", count=1000):
            k = key.decode() if isinstance(key, bytes) else str(key)
            if k.startswith(head) and k.endswith(tail):
                found.add(k[len(head) : -len(tail)])
        return sorted(found)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first, by thread, namespace, ``before`` and metadata ``filter``.

        With ``config=None`` every thread under this prefix is scanned (an operator's query, not a
        hot path: it walks the keyspace with SCAN).
        """
        if limit is not None and limit <= 0:
            return
        remaining = limit
        conf = config["configurable"] if config else {}
        threads = [conf["thread_id"]] if "thread_id" in conf else await self._threads()
        wanted_ns: str | None = conf.get("checkpoint_ns")
        wanted_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        for thread_id in threads:
            namespaces = [wanted_ns] if wanted_ns is not None else await self._namespaces(thread_id)
            for ns in namespaces:
                async for tup in self._list_ns(thread_id, ns, wanted_id, before_id):
                    if filter and not all(tup.metadata.get(k) == v for k, v in filter.items()):
                        continue
                    yield tup
                    if remaining is not None:
                        remaining -= 1
                        if remaining <= 0:
                            return

    async def _list_ns(
        self, thread_id: str, ns: str, wanted_id: str | None, before_id: str | None
    ) -> AsyncIterator[CheckpointTuple]:
        if wanted_id:
            if before_id and wanted_id >= before_id:
                return
            loaded = await self._call(self._get, thread_id, [ns, wanted_id])
            if loaded:
                yield self._tuple(thread_id, ns, loaded)
            return
        upper = f"({before_id}" if before_id else "+"
        while True:
            page = await self._call(self._list, thread_id, [ns, upper, _LIST_PAGE])
            for loaded in page:
                yield self._tuple(thread_id, ns, loaded)
            if len(page) < _LIST_PAGE:
                return
            last = page[-1][0]
            upper = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    # -- delete, prune, copy ------------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and blob of the thread (atomic, one round trip)."""
        await self._call(self._delete, thread_id, [])

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the newest checkpoint per namespace (``keep_latest``) or delete all (``delete``).

        Graphs using LangGraph's beta ``DeltaChannel`` must not be pruned with ``keep_latest``.
        """
        if strategy not in {"keep_latest", "delete"}:
            msg = f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'"
            raise ValueError(msg)
        for thread_id in thread_ids:
            script = self._delete if strategy == "delete" else self._prune
            await self._call(script, thread_id, [])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace, checkpoint, blob and write of one thread to another.

        Source and target live in different cluster slots, so this reads the source, then writes
        the target in one MULTI/EXEC; it is not atomic with concurrent writes to the source.
        """
        src = self._base(source_thread_id)
        dst = self._base(target_thread_id)
        namespaces = await self._namespaces(source_thread_id)
        suffixes = ("ids:", "cp:", "bl:", "wi:", "wv:")
        read = self.client.pipeline(transaction=False)
        for ns in namespaces:
            read.zrange(src + "ids:" + ns, 0, -1)
            read.hgetall(src + "cp:" + ns)
            read.hgetall(src + "bl:" + ns)
            read.zrange(src + "wi:" + ns, 0, -1)
            read.hgetall(src + "wv:" + ns)
        data = await read.execute()
        write = self.client.pipeline(transaction=True)
        for i, ns in enumerate(namespaces):
            ids, cps, blobs, wis, wvs = data[i * 5 : i * 5 + 5]
            if self.signer is not None:
                cps, blobs, wvs = self._resign(source_thread_id, target_thread_id, ns, cps, blobs, wvs)
            write.sadd(dst + "ns", ns)
            if ids:
                write.zadd(dst + suffixes[0] + ns, dict.fromkeys(ids, 0))
            if cps:
                write.hset(dst + suffixes[1] + ns, mapping=cps)
            if blobs:
                write.hset(dst + suffixes[2] + ns, mapping=blobs)
            if wis:
                write.zadd(dst + suffixes[3] + ns, dict.fromkeys(wis, 0))
            if wvs:
                write.hset(dst + suffixes[4] + ns, mapping=wvs)
        if self.ttl_seconds:
            for ns in namespaces:
                for s in suffixes:
                    write.expire(dst + s + ns, self.ttl_seconds)
            write.expire(dst + "ns", self.ttl_seconds)
        await write.execute()

    def _resign(
        self,
        src: str,
        dst: str,
        ns: str,
        cps: dict[bytes, bytes],
        blobs: dict[bytes, bytes],
        wvs: dict[bytes, bytes],
    ) -> tuple[dict[bytes, bytes], dict[bytes, bytes], dict[bytes, bytes]]:
        """The values of one namespace checked against their source place and signed for the target's."""
        out_cps = {}
        for raw_id, rec in cps.items():
            cid = raw_id.decode()
            _, prefix, sealed = _split_record(rec)
            body = self._open(sealed, "record", src, ns, cid, prefix)
            out_cps[raw_id] = prefix + self._seal(body, "record", dst, ns, cid, prefix)
        out_blobs = {
            f: self._seal(self._open(v, "blob", src, ns, f), "blob", dst, ns, f) for f, v in blobs.items()
        }
        out_wvs = {
            m: self._seal(self._open(v, *self._write_place(src, ns, m)), *self._write_place(dst, ns, m))
            for m, v in wvs.items()
        }
        return out_cps, out_blobs, out_wvs

    # -- sync API: this saver is async only ----------------------------------------------------

    def _sync_unsupported(self) -> NotImplementedError:
        return NotImplementedError(
            "RedisCheckpointSaver is async only: use ainvoke/astream and the a* methods"
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Not supported: use ``aget_tuple``."""
        raise self._sync_unsupported()

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Not supported: use ``alist``."""
        raise self._sync_unsupported()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Not supported: use ``aput``."""
        raise self._sync_unsupported()

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Not supported: use ``aput_writes``."""
        raise self._sync_unsupported()
