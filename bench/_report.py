"""Appending benchmark results to BENCHMARKS.md with date, commit and machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["append_section", "machine_line", "write_report"]

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
# What a run writes itself (the plot, before the report): it does not make the tree dirty.
_OWN_OUTPUT = (":(exclude)BENCHMARKS.md", ":(exclude)docs/bench")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *_OWN_OUTPUT],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_line() -> str:
    """One line naming the machine: CPU model, cores, memory, OS, Python."""
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


_HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench`. First the latest full run's ratios and targets, then every run and note, newest "
    "first. Ratios compare implementations measured in the same run on the same machine, because the "
    "machines are shared and noisy.\n"
)
_LATEST = "## Latest `make bench`: ratios and targets"
_HISTORY = "## History, newest first"


def _sections(text: str) -> list[str]:
    """The report's dated sections (each starting with ``## ``), as they stand."""
    out: list[str] = []
    for chunk in ("\n" + text).split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0]
        if title.startswith((_LATEST[3:], _HISTORY[3:])):
            continue
        out.append("## " + chunk.strip("\n"))
    return out


def _ordered(sections: list[str]) -> list[str]:
    """Newest first, by the date in each title (``— YYYY-MM-DD HH:MM UTC`` or ``(YYYY-MM-DD``)."""

    def when(section: str) -> str:
        title = section.split("\n", 1)[0]
        for marker in ("— ", "("):
            i = title.find(marker + "20")
            if i >= 0:
                return title[i + len(marker) : i + len(marker) + 16]
        return ""

    return sorted(sections, key=when, reverse=True)


def _headline(section: str) -> str:
    """The ratios-and-targets part of a make bench section (its headline list), or ""."""
    start = section.find("### Headline")
    if start < 0:
        return ""
    kept: list[str] = []
    for line in section[start:].splitlines()[1:]:
        if line.startswith("### ") and line[4:5].isdigit():  # the first benchmark's own table
            break
        kept.append(line)
    return "\n".join(kept).strip()


def write_report(sections: list[str]) -> None:
    """BENCHMARKS.md: the header, the latest full run's headline, then every section newest first."""
    ordered = _ordered(sections)
    latest = next((s for s in ordered if s.startswith("## make bench —")), "")
    head = latest.split("\n", 1)[0][3:] if latest else ""
    parts = [_HEADER]
    if latest:
        parts.append(f"{_LATEST}\n\nFrom {head} (below, in full).\n\n{_headline(latest)}\n")
    parts.append(f"{_HISTORY}\n")
    parts += [s + "\n" for s in ordered]
    REPORT.write_text("\n".join(parts))


def append_section(title: str, body: str) -> None:
    """Add one dated section (the newest) to BENCHMARKS.md, and put the report back in order."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {title} — {now}, commit {_commit()}\n\nMachine: {machine_line()}\n\n{body.strip()}"
    existing = _sections(REPORT.read_text()) if REPORT.exists() else []
    write_report([*existing, section])


if __name__ == "__main__":
    # `python -m bench._report`: put an existing report in order without running anything.
    write_report(_sections(REPORT.read_text()))
