"""`python -m server` is the `movie-orchestrator` command."""

import sys

from server.process.cli import main

sys.exit(main())
