"""What a run checks before it acts: that no checkpoint, pending write or answer went missing.

Signatures catch a value that was changed or moved; they cannot catch one that was deleted. So the
workflow record (itself signed, every field required) keeps a mark of where the run last stopped:
the id of its newest checkpoint and how many pending writes it had, and the decisions taken since.
A run refuses to start when its checkpoints end before that mark (deleted or rolled back), when the
mark's checkpoint lost writes, or when an open question whose answer was recorded has none.
"""

from __future__ import annotations

from typing import Any

from adapters import IntegrityError, RedisCheckpointSaver, WorkflowRecord

__all__ = ["check_answers", "check_mark", "has_checkpoints", "mark_of"]


def _config(wid: str) -> Any:
    return {"configurable": {"thread_id": wid, "checkpoint_ns": ""}}


async def mark_of(saver: RedisCheckpointSaver, wid: str) -> str:
    """``"<newest checkpoint id>:<its pending writes>"``, or "" for a workflow without checkpoints."""
    tup = await saver.aget_tuple(_config(wid))
    if tup is None:
        return ""
    return f"{tup.config['configurable']['checkpoint_id']}:{len(tup.pending_writes or [])}"


async def has_checkpoints(saver: RedisCheckpointSaver, wid: str) -> bool:
    """Whether the workflow's thread has any checkpoint (read without verifying)."""
    return bool(await saver.client.exists(saver._ns_key(wid)))


async def check_mark(saver: RedisCheckpointSaver, rec: WorkflowRecord) -> None:
    """Refuse to run a workflow whose checkpoints end before the mark its record keeps.

    Raises:
        IntegrityError: checkpoints or pending writes were removed (or rolled back) outside the orchestrator.
    """
    if not rec.mark:
        return
    mark_id, _, mark_writes = rec.mark.rpartition(":")
    tup = await saver.aget_tuple(_config(rec.id))
    if tup is None:
        msg = f"workflow {rec.id!r} stopped at checkpoint {mark_id} but has no checkpoints: they were removed"
        raise IntegrityError(msg)
    newest = str(tup.config["configurable"]["checkpoint_id"])
    if newest < mark_id:
        msg = (f"workflow {rec.id!r} stopped at checkpoint {mark_id} but its newest is {newest}: newer "
               "checkpoints were removed")  # fmt: skip
        raise IntegrityError(msg)
    if newest == mark_id and len(tup.pending_writes or []) < int(mark_writes or 0):
        msg = (f"checkpoint {mark_id} of workflow {rec.id!r} had {mark_writes} pending writes and has "
               f"{len(tup.pending_writes or [])}: some were removed")  # fmt: skip
        raise IntegrityError(msg)


def check_answers(rec: WorkflowRecord, interrupts: Any, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The answers to resume with: only those to open questions, each among the question's options.

    Raises:
        IntegrityError: a question recorded as answered has no answer, or an answer is not one of its options.
    """
    resume: dict[str, Any] = {}
    for intr in interrupts:
        answer = answers.get(intr.id)
        if answer is None:
            if intr.id in rec.decided:
                msg = f"decision {intr.id!r} of workflow {rec.id!r} was taken but its answer is missing"
                raise IntegrityError(msg)
            continue
        options = intr.value.get("options") if isinstance(intr.value, dict) else None
        if options and answer.get("choice") not in options:
            msg = f"the answer to decision {intr.id!r} of workflow {rec.id!r} is not one of its options {options}"
            raise IntegrityError(msg)
        resume[intr.id] = answer["choice"]
    return resume
