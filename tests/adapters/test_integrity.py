"""Signed state: every checkpoint, write and record field carries an HMAC; tampering is detected."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from adapters import AnyRedis, IntegrityError, RedisCheckpointSaver, SignedSerializer, Signer, WorkflowStore
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
