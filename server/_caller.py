"""The caller of the current request, set by the transport that authenticated it."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server._service import Caller

__all__ = ["current_caller"]

current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("current_caller", default=None)
