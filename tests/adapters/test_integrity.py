"""Signed state: every checkpoint, write and record field carries an HMAC; tampering is detected."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from adapters import (
    AnyRedis,
    IntegrityError,
    RedisCheckpointSaver,
    SignedSerializer,
    Signer,
    WorkflowStore,
    place,
)
from tests.adapters.test_checkpointer import aes_serde

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_round_trip_and_every_kind_of_tampering() -> None:
    """Signed values load back; a flipped byte, a moved blob, a missing or unknown signature all fail."""
    serde = SignedSerializer(JsonPlusSerializer(), Signer([KEY_A]))
    kind, blob = serde.dumps_typed({"story": "the lighthouse"})
    assert serde.loads_typed((kind, blob)) == {"story": "the lighthouse"}
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(IntegrityError, match="changed after it was signed"):
        serde.loads_typed((kind, flipped))
    with pytest.raises(IntegrityError):
        serde.loads_typed(("json" if kind != "json" else "msgpack", blob))  # the type is covered too
    with pytest.raises(IntegrityError, match="no signature"):
        serde.loads_typed(JsonPlusSerializer().dumps_typed({"story": "x"}))
    with pytest.raises(IntegrityError, match="does not have"):
        SignedSerializer(JsonPlusSerializer(), Signer([KEY_B])).loads_typed((kind, blob))


def test_rotation_new_key_signs_old_key_still_verifies() -> None:
    """With keys [B, A], data signed by A still loads and new data is signed by B."""
    old = SignedSerializer(JsonPlusSerializer(), Signer([KEY_A]))
    rotated = SignedSerializer(JsonPlusSerializer(), Signer([KEY_B, KEY_A]))
    assert rotated.loads_typed(old.dumps_typed(1)) == 1
    new_blob = rotated.dumps_typed(2)
    with pytest.raises(IntegrityError):
        old.loads_typed(new_blob)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer([b"short"])


def test_composes_with_encrypted_serializer() -> None:
    """Signing wraps LangGraph's EncryptedSerializer: values are encrypted and signed."""
    serde = SignedSerializer(aes_serde(), Signer([KEY_A]))
    kind, blob = serde.dumps_typed({"secret": "plot twist"})
    assert b"plot twist" not in blob
    assert serde.loads_typed((kind, blob)) == {"secret": "plot twist"}


async def test_tampered_checkpoint_byte_in_redis_is_detected(redis_client: AnyRedis, key_prefix: str) -> None:
    """Editing one byte of a stored channel value in Redis makes reading the checkpoint fail."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix, serde=SignedSerializer(JsonPlusSerializer(),
                                                                                        Signer([KEY_A])))  # fmt: skip
    tid = str(uuid4())
    cp = generate_checkpoint(channel_values={"plot": "the keeper lies"}, channel_versions={"plot": 1})
    stored = await saver.aput(generate_config(tid), cp, {"source": "input", "step": -1}, {"plot": 1})
    assert (await saver.aget_tuple(stored)) is not None
    r: Any = redis_client
    blobs = f"{key_prefix}:{{{tid}}}:bl:"
    field, value = next(iter((await r.hgetall(blobs)).items()))
    await r.hset(blobs, field, value[:-1] + bytes([value[-1] ^ 0x20]))
    with pytest.raises(IntegrityError):
        await saver.aget_tuple(stored)


async def test_tampered_record_field_is_detected(redis_client: AnyRedis, key_prefix: str) -> None:
    """Changing a workflow record field in Redis (say its project, to escape a key's scope) is detected."""
    store = WorkflowStore(redis_client, prefix=key_prefix, signer=Signer([KEY_A]))
    rec, _ = await store.create(project_id="p1", workflow="preview", brief="", options={}, created_by="t",
                                correlation_id="c")  # fmt: skip
    assert (await store.get(rec.id)) is not None
    r: Any = redis_client
    await r.hset(store.key(rec.id), "project_id", "p2")
    with pytest.raises(IntegrityError):
        await store.get(rec.id)


def test_a_signature_is_bound_to_its_place_and_deployment() -> None:
    """The same bytes signed for one place, or one deployment, fail in another; old MOS1 blobs are refused."""
    signer = Signer([KEY_A], deployment="prod")
    blob = signer.sign(b"value", place("record", "wf-x", "options"))
    assert signer.verify(blob, place("record", "wf-x", "options")) == b"value"
    for elsewhere in (place("record", "wf-y", "options"), place("record", "wf-x", "status"),
                      place("record", "wf-xo", "ptions")):  # fmt: skip
        with pytest.raises(IntegrityError, match="moved from another place"):
            signer.verify(blob, elsewhere)
    with pytest.raises(IntegrityError):
        Signer([KEY_A], deployment="staging").verify(blob, place("record", "wf-x", "options"))
    with pytest.raises(IntegrityError, match="old-format signature"):
        signer.verify(b"MOS1" + blob[4:], place("record", "wf-x", "options"))


async def test_bound_checkpoints_refuse_moved_or_missing_parts(
    redis_client: AnyRedis, key_prefix: str
) -> None:
    """With a signer, a blob moved from another thread, an edited parent id, or a removed blob fails; keys rotate."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix, signer=Signer([KEY_A]))
    r: Any = redis_client
    stored = {}
    for tid in ("t-x", "t-y"):
        cp = generate_checkpoint(channel_values={"plot": f"plot of {tid}"}, channel_versions={"plot": 1})
        stored[tid] = await saver.aput(generate_config(tid), cp, {"source": "input", "step": -1}, {"plot": 1})
    bl_x, bl_y = f"{key_prefix}:{{t-x}}:bl:", f"{key_prefix}:{{t-y}}:bl:"
    field = next(iter(await r.hkeys(bl_x)))
    original = await r.hget(bl_x, field)
    await r.hset(bl_x, field, await r.hget(bl_y, field))  # a validly signed value of another thread
    with pytest.raises(IntegrityError, match="moved from another place"):
        await saver.aget_tuple(stored["t-x"])
    await r.hdel(bl_x, field)
    with pytest.raises(IntegrityError, match="missing"):
        await saver.aget_tuple(stored["t-x"])
    await r.hset(bl_x, field, original)
    rotated = RedisCheckpointSaver(redis_client, prefix=key_prefix, signer=Signer([KEY_B, KEY_A]))
    tup = await rotated.aget_tuple(stored["t-x"])
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"plot": "plot of t-x"}
    cp_x = f"{key_prefix}:{{t-x}}:cp:"
    cid = stored["t-x"]["configurable"]["checkpoint_id"]
    rec = await r.hget(cp_x, cid)
    await r.hset(cp_x, cid, rec[:-1] + bytes([rec[-1] ^ 1]))  # the parent id is the record's last field
    with pytest.raises(IntegrityError):
        await saver.aget_tuple(stored["t-x"])


async def test_copy_thread_re_signs_for_the_target(redis_client: AnyRedis, key_prefix: str) -> None:
    """copy_thread checks the source's signatures and signs the copy for its own thread."""
    saver = RedisCheckpointSaver(redis_client, prefix=key_prefix, signer=Signer([KEY_A]))
    cp = generate_checkpoint(channel_values={"plot": "p"}, channel_versions={"plot": 1})
    stored = await saver.aput(generate_config("src"), cp, {"source": "input", "step": -1}, {"plot": 1})
    await saver.aput_writes(stored, [("plot", "next")], "task-1")
    await saver.acopy_thread("src", "dst")
    tup = await saver.aget_tuple({"configurable": {"thread_id": "dst", "checkpoint_ns": ""}})
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"plot": "p"}
    assert tup.pending_writes == [("task-1", "plot", "next")]


async def test_store_values_are_bound_to_workflow_and_field(redis_client: AnyRedis, key_prefix: str) -> None:
    """A record field from another workflow, a removed field, a forged answer or memo entry all fail."""
    store = WorkflowStore(redis_client, prefix=key_prefix, signer=Signer([KEY_A], deployment=key_prefix))
    made = [await store.create(project_id=p, workflow="preview", brief="", options={}, created_by="t",
                               correlation_id="c") for p in ("p1", "p2")]  # fmt: skip
    x, y = made[0][0].id, made[1][0].id
    r: Any = redis_client
    await r.hset(store.key(x), "project_id", await r.hget(store.key(y), "project_id"))
    with pytest.raises(IntegrityError, match="moved from another place"):
        await store.get(x)
    await r.hdel(store.key(x), "project_id")
    with pytest.raises(IntegrityError, match="lacks the fields \\['project_id'\\]"):
        await store.get(x)
    await store.record_decision(y, "d1", {"choice": "approve"})
    assert (await store.decisions(y))["d1"]["choice"] == "approve"
    await r.hset(store.key(y, "decisions"), "d1", '{"choice": "reject"}')
    with pytest.raises(IntegrityError):
        await store.decisions(y)
    await store.memo_put(y, "story:writer", {"logline": "ours"})
    assert await store.memo_get(y, "story:writer") == {"logline": "ours"}
    await r.hset(store.key(y, "memo"), "story:writer", '{"logline": "injected"}')
    with pytest.raises(IntegrityError):
        await store.memo_get(y, "story:writer")
