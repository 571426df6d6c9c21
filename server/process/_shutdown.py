"""Stop means stop: SIGTERM (or SIGINT) starts a graceful stop bounded by a grace period.

The event loop cannot be trusted to notice a signal: a step that keeps it busy (a runaway computation, a
long C call) delays every callback, including asyncio's signal handlers. So the signals are blocked in every
thread and one watcher thread receives them with `sigwait`:

- the first asks the loop to stop gracefully (the engine drains its runs to a step boundary and hands them
  back, connections close) and starts the grace clock;
- a second one, or the end of the grace, hands back what this process still holds from the watcher thread
  (its own Redis connection, a couple of seconds at most) and exits at once with `os._exit`.

A run handed back that way stays counted in its workflow's attempts (it did not end on its own), so a run
that keeps an instance from stopping is eventually quarantined like one that kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import structlog

__all__ = ["ShutdownWatch"]

log = structlog.get_logger(__name__)

_SIGNALS = {signal.SIGTERM, signal.SIGINT}
FORCED_EXIT_CODE = 70


class ShutdownWatch:
    """Receives SIGTERM/SIGINT in a thread of its own; bounds the stop by `grace_seconds`.

    Call `install()` before any other thread starts (threads inherit the blocked signals), then
    `await wait()` in the loop. `on_force` runs in the watcher thread just before a forced exit.
    """

    def __init__(self, grace_seconds: float, on_force: Callable[[], object] | None = None) -> None:
        self.grace = grace_seconds
        self.on_force = on_force
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._first = threading.Event()

    def install(self) -> None:
        """Block the signals in this thread (and so in every thread started after) and start the watcher."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        threading.Thread(target=self._watch, name="shutdown-watch", daemon=True).start()

    async def wait(self) -> None:
        """Return when the first signal arrives."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        if self._first.is_set():
            return
        await self._event.wait()

    def _watch(self) -> None:
        sig = signal.sigwait(_SIGNALS)
        self.received = 1
        started = time.monotonic()
        log.info("shutdown.started", signal=signal.Signals(sig).name, grace_seconds=self.grace)
        self._first.set()
        if self._loop is not None and self._event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._event.set)
        again = signal.sigtimedwait(_SIGNALS, self.grace)
        why = "second_signal" if again is not None else "grace_over"
        self.received += again is not None
        self.force(why, time.monotonic() - started)

    def force(self, why: str, elapsed: float) -> None:
        """Hand back what is held (bounded) and exit now."""
        log.warning("shutdown.forced", reason=why, after_seconds=round(elapsed, 2))
        if self.on_force is not None:
            try:
                self.on_force()
            except Exception:
                log.exception("shutdown.hand_back_failed")
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(FORCED_EXIT_CODE)
