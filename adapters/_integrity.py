"""Integrity of what we store in Redis: HMAC-SHA256 over every checkpoint, write and record field.

A signed blob is ``b"MOS1" + key id (4 bytes) + HMAC (32 bytes) + data``; the MAC also covers a
context (the serialized type, or the record and field name) so a valid blob cannot be moved elsewhere.
Several keys are accepted, so they can be rotated: the first signs, all of them verify.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from adapters.errors import OrchestratorError

__all__ = ["IntegrityError", "SignedSerializer", "Signer"]

_MAGIC = b"MOS1"


class IntegrityError(OrchestratorError):
    """Stored data failed its signature check: it was changed outside the orchestrator."""


class Signer:
    """HMAC-SHA256 signing with rotation.

    Args:
        keys: secret keys, newest first (at least one, each at least 16 bytes).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            msg = "integrity keys: give at least one key of at least 16 bytes"
            raise ValueError(msg)
        self._keys = {hashlib.sha256(k).digest()[:4]: k for k in reversed(keys)}
        self._signing_id = hashlib.sha256(keys[0]).digest()[:4]

    def sign(self, data: bytes, context: bytes = b"") -> bytes:
        """`data` with its signature in front."""
        # one-shot hmac.digest: OpenSSL's C path, no HMAC object per field
        mac = hmac.digest(self._keys[self._signing_id], context + b"\x00" + data, "sha256")
        return _MAGIC + self._signing_id + mac + data

    def verify(self, blob: bytes, context: bytes = b"") -> bytes:
        """The data of a signed blob.

        Raises:
            IntegrityError: unsigned, signed with an unknown key, or changed since it was signed.
        """
        if len(blob) < 40 or blob[:4] != _MAGIC:
            msg = "stored data carries no signature"
            raise IntegrityError(msg)
        key = self._keys.get(blob[4:8])
        if key is None:
            msg = "stored data is signed with a key this instance does not have"
            raise IntegrityError(msg)
        data = blob[40:]
        expected = hmac.digest(key, context + b"\x00" + data, "sha256")
        if not hmac.compare_digest(expected, blob[8:40]):
            msg = "stored data was changed after it was signed"
            raise IntegrityError(msg)
        return data


class SignedSerializer:
    """A LangGraph serializer that signs what `inner` produces (wrap an EncryptedSerializer to also encrypt)."""

    def __init__(self, inner: SerializerProtocol, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize with `inner`, then sign (the type is covered by the signature)."""
        kind, data = self.inner.dumps_typed(obj)
        return kind, self.signer.sign(data, kind.encode())

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Verify, then deserialize with `inner`.

        Raises:
            IntegrityError: the stored bytes fail their signature.
        """
        kind, blob = data
        return self.inner.loads_typed((kind, self.signer.verify(blob, kind.encode())))
