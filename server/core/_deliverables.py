"""Where a workflow's deliverables live on disk: ``<media folder>/deliverables/<project>/<workflow>/``.

The engine's file port writes there; the board and the Tasks result read from there. The Task Service
stand-in keeps its own media under ``<media folder>/_tasks`` and Auto-Movie's under ``_auto_movie``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deliverables"]

_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class Deliverables:
    """The deliverables tree under a media folder.

    Args:
        media_root: the deployment's media folder (``MEDIA_DIR``).
    """

    media_root: Path

    @property
    def root(self) -> Path:
        """The folder every workflow's deliverables folder is in."""
        return self.media_root / "deliverables"

    def folder(self, project_id: str, workflow_id: str) -> Path:
        """The folder of one workflow's deliverables."""
        return self.root / project_id / workflow_id

    def file(self, project_id: str, workflow_id: str, name: str) -> Path | None:
        """An existing deliverable of the workflow by its plain file name; None for any other name."""
        if not _FILE_RE.match(name):
            return None
        path = self.folder(project_id, workflow_id) / name
        return path if path.is_file() else None

    @staticmethod
    def plain_name(name: str) -> bool:
        """True for a file name the board may serve (no path, no odd characters)."""
        return bool(_FILE_RE.match(name))
