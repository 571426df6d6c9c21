"""The status writes of one run's steps, sent in the background and merged."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from adapters import StoreEvent, WorkflowStore

__all__ = ["StatusWriter"]

# How long a run's step status may wait to be merged with the next steps' before it is written.
STATUS_LINGER = 0.02


class StatusWriter:
    """The status writes of one run's steps, sent in the background and merged.

    The graph does not wait for its status to be written. Writes gather for up to `linger` seconds
    (a few steps' worth under load), then go out as one atomic update: the latest value of each
    field wins and every event is kept, in order. `drain()` sends what is left at once and returns
    when everything added is in Redis, or raises what writing raised.
    """

    def __init__(self, store: WorkflowStore, wid: str, linger: float = STATUS_LINGER) -> None:
        self._store = store
        self._wid = wid
        self._linger = linger
        self._fields: dict[str, Any] = {}
        self._events: list[StoreEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()
        self._error: Exception | None = None

    def add(self, fields: dict[str, Any], event: StoreEvent | None = None) -> None:
        """Queue fields (the latest value wins) and an event (kept in order)."""
        self._fields.update(fields)
        if event is not None:
            self._events.append(event)
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._fields or self._events:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self._linger)
                fields, events = self._fields, self._events
                self._fields, self._events = {}, []
                await self._store.update_many(self._wid, fields, events)
        except Exception as exc:  # kept for drain(), which the run always reaches
            self._error = exc
        finally:
            self._task = None

    async def drain(self) -> None:
        """Send what is queued now; return when all of it is written, or raise what writing raised."""
        self._urgent.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Drop what is not written yet (the run was cancelled)."""
        if self._task is not None:
            self._task.cancel()
