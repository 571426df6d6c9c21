"""The process: the command line, settings read once, the assembly of every part, engine child processes,
shutdown on signals, logging set-up and the demo.

Owns: `Orchestrator` (the handle of one running process, built by `Orchestrator.open`), `open_orchestrator`
(the same with the stand-ins), `main` (the console script).

May import everything of `server`; nothing imports it but `server/__init__.py` and `server/__main__.py`.
"""

from server.process._assembly import Orchestrator
from server.process._demo import board_link, write_board_access
from server.process._opening import open_orchestrator
from server.process.cli import main

__all__ = ["Orchestrator", "board_link", "main", "open_orchestrator", "write_board_access"]
