"""Command line: ``movie-orchestrator``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    del argv
    print("movie-orchestrator: no commands yet", file=sys.stderr)
    return 2
