"""A ceiling on one value of a workflow's state: a runaway state fails its workflow with a clear error
instead of filling memory and Redis."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from adapters import StateTooLargeError

__all__ = ["SizeCappedSerializer"]


class SizeCappedSerializer:
    """A LangGraph serializer that refuses values above a ceiling (put it inside the signing serializer).

    Every value LangGraph stores (each channel's value, each step's writes) goes through `dumps_typed`, so
    the ceiling bounds each part of a workflow's state; a graph has a fixed set of channels, so the whole
    state is bounded too. Reading is not capped: what was written under a higher ceiling stays readable.
    """

    def __init__(self, inner: SerializerProtocol, max_bytes: int) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize with `inner`; raise when the result is above the ceiling."""
        kind, data = self.inner.dumps_typed(obj)
        if len(data) > self.max_bytes:
            msg = (
                f"state_too_large: one value of the workflow's state ({type(obj).__name__}) serialized to "
                f"{len(data)} bytes, above STATE_MAX_BYTES={self.max_bytes}; the workflow stops instead of "
                "growing without bound (raise the ceiling, then retry_step)"
            )
            raise StateTooLargeError(msg)
        return kind, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Deserialize with `inner`."""
        return self.inner.loads_typed(data)
