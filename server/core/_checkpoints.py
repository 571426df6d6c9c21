"""A workflow's checkpoints as callers see them: the history, one checkpoint's values, a fork's copy.

The only part of the core that reads the checkpointer; it verifies what it reads (the saver does), so a
tampered checkpoint reads as `IntegrityError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langgraph.checkpoint.base import CheckpointTuple

from adapters import InvalidArgumentError, NotFoundError, RedisCheckpointSaver
from server.core._models import CheckpointDetail, CheckpointInfo

__all__ = ["Checkpoints"]

_CHECKPOINT_ID = re.compile(r"^[0-9a-f-]{8,64}$")


def _config(thread_id: str, checkpoint_id: str | None = None) -> Any:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _parent(tup: CheckpointTuple) -> str | None:
    return tup.parent_config["configurable"]["checkpoint_id"] if tup.parent_config else None


class Checkpoints:
    """Reads (and copies) workflows' checkpoints in the root namespace.

    Args:
        saver: the checkpointer every graph uses.
    """

    def __init__(self, saver: RedisCheckpointSaver) -> None:
        self._saver = saver

    async def one(self, workflow_id: str, checkpoint_id: str) -> CheckpointTuple:
        """One checkpoint of a workflow.

        Raises:
            InvalidArgumentError: `checkpoint_id` is not a checkpoint id.
            NotFoundError: the workflow has no such checkpoint.
        """
        if not isinstance(checkpoint_id, str) or not _CHECKPOINT_ID.match(checkpoint_id):
            raise InvalidArgumentError(
                "checkpoint_id", "must be a checkpoint id from workflow://{id}/checkpoints"
            )
        tup = await self._saver.aget_tuple(_config(workflow_id, checkpoint_id))
        if tup is None:
            msg = f"unknown checkpoint {checkpoint_id!r} of workflow {workflow_id!r}"
            raise NotFoundError(msg)
        return tup

    async def history(self, workflow_id: str, limit: int = 100) -> list[CheckpointInfo]:
        """The workflow's checkpoints, newest first."""
        out: list[CheckpointInfo] = []
        async for tup in self._saver.alist(_config(workflow_id), limit=limit):
            out.append(CheckpointInfo(
                checkpoint_id=tup.config["configurable"]["checkpoint_id"], parent_id=_parent(tup),
                step=tup.metadata.get("step"), source=tup.metadata.get("source"), created_at=tup.checkpoint["ts"],
                next=sorted({w[1].removeprefix("branch:to:") for w in tup.pending_writes or []
                             if str(w[1]).startswith("branch:to:")}),
            ))  # fmt: skip
        return out

    async def detail(self, workflow_id: str, checkpoint_id: str) -> CheckpointDetail:
        """One checkpoint's values (the graph's own routing channels left out) and metadata."""
        tup = await self.one(workflow_id, checkpoint_id)
        values = json.loads(json.dumps(tup.checkpoint["channel_values"], default=str))
        values = {k: v for k, v in values.items() if not k.startswith("branch:")}
        return CheckpointDetail(workflow_id=workflow_id, checkpoint_id=checkpoint_id, parent_id=_parent(tup),
                                metadata=json.loads(json.dumps(dict(tup.metadata), default=str)), values=values,
                                pending_writes=len(tup.pending_writes or []))  # fmt: skip

    async def latest(self, workflow_id: str) -> tuple[str, dict[str, Any]] | None:
        """The newest checkpoint's id and state values; None before the first step."""
        tup = await self._saver.aget_tuple(_config(workflow_id))
        if tup is None:
            return None
        return str(tup.config["configurable"]["checkpoint_id"]), dict(
            tup.checkpoint.get("channel_values", {})
        )

    async def copy(self, source: CheckpointTuple, target_id: str) -> None:
        """Make `source` (with its pending writes) the first checkpoint of the workflow `target_id`."""
        versions = dict(source.checkpoint["channel_versions"])
        metadata: Any = {**source.metadata, "source": "fork"}
        stored = await self._saver.aput(_config(target_id), source.checkpoint, metadata, versions)
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in source.pending_writes or []:
            by_task.setdefault(task_id, []).append((channel, value))
        for task_id, writes in by_task.items():
            await self._saver.aput_writes(stored, writes, task_id)
