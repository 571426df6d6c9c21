"""Small real media files for the stand-ins: PNG images, WAV audio, JSON documents."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
import wave
import zlib
from array import array
from pathlib import Path
from typing import Any

__all__ = ["write_json", "write_png", "write_wav"]


def write_png(path: Path, seed: str, width: int = 64, height: int = 36) -> Path:
    """A valid RGB PNG whose colours derive from `seed` (a gradient, so it is not blank)."""
    digest = hashlib.sha256(seed.encode()).digest()
    r0, g0, b0 = digest[0], digest[1], digest[2]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((r0 + x * 3) % 256, (g0 + y * 5) % 256, (b0 + x + y) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(rows), 6))
    png += chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def write_wav(path: Path, seed: str, seconds: float = 0.5, rate: int = 8000) -> Path:
    """A mono 16-bit WAV tone whose pitch derives from `seed`.

    The pitch is a whole number of hertz, so one second of samples repeats exactly: it is computed once and
    repeated (a 30 s track took ~13 ms of CPU sample by sample, and the stand-in makes one per audio job).
    """
    freq = 220 + hashlib.sha256(seed.encode()).digest()[0] * 2
    second = array("h", (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate)))
    if sys.byteorder == "big":
        second.byteswap()  # WAV samples are little-endian
    whole, part = divmod(int(seconds * rate), rate)
    one = second.tobytes()
    frames = one * whole + one[: part * 2]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """A JSON document."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path
