"""The memory high-water mark: above it the engine claims no new runs (the runs it holds go on), and
says so in /readyz and the metrics."""

from __future__ import annotations

import os
import time

import psutil

__all__ = ["MemoryMark"]


class MemoryMark:
    """Resident memory of this process against a high-water mark.

    Args:
        mark_bytes: the mark; above it `above()` is True.
        every: seconds a reading is reused (reading costs a /proc read).
    """

    def __init__(self, mark_bytes: int, every: float = 0.5) -> None:
        self.mark_bytes = mark_bytes
        self._proc = psutil.Process(os.getpid())
        self._every = every
        self._read_at = 0.0
        self._rss = 0

    @property
    def rss(self) -> int:
        """Resident set size in bytes (refreshed at most every `every` seconds)."""
        now = time.monotonic()
        if now - self._read_at >= self._every:
            self._rss = int(self._proc.memory_info().rss)
            self._read_at = now
        return self._rss

    def above(self) -> bool:
        """True when the process uses more than the mark."""
        return self.rss > self.mark_bytes

    def describe(self) -> str:
        """For logs and /readyz."""
        return f"resident memory {self.rss / 2**20:.0f} MiB is above MEMORY_HIGH_WATER_MB={self.mark_bytes / 2**20:.0f}"
