"""What a run checks before it acts: its whole signed state, and that nothing of it went missing.

Signatures catch a value that was changed or moved; they cannot catch one that was deleted. So the
workflow record (itself signed, every field required) keeps a mark of where the run last stopped:
the id of its newest checkpoint, how many pending writes it had, and how many decisions, jobs, job
results and memo entries the workflow held; plus the decisions taken since. A run refuses to start
when its checkpoints end before that mark (deleted or rolled back), when anything counted went
missing, when any signed value of the workflow fails, or when an answered question has no answer.
"""

from __future__ import annotations

import json
from typing import Any

from adapters import IntegrityError, RedisCheckpointSaver, WorkflowRecord, WorkflowStore

__all__ = ["check_answers", "check_mark", "mark_of"]


def _config(wid: str) -> Any:
    return {"configurable": {"thread_id": wid, "checkpoint_ns": ""}}


async def mark_of(saver: RedisCheckpointSaver, store: WorkflowStore, wid: str) -> str:
    """Where the workflow stands now, as JSON for its record's ``mark``."""
    tup = await saver.aget_tuple(_config(wid))
    counts: dict[str, Any] = dict(await store.verify_workflow(wid))
    if tup is not None:
        counts["checkpoint"] = str(tup.config["configurable"]["checkpoint_id"])
        counts["writes"] = len(tup.pending_writes or [])
    return json.dumps(counts, sort_keys=True)


async def check_mark(saver: RedisCheckpointSaver, store: WorkflowStore, rec: WorkflowRecord) -> None:
    """Verify the workflow's signed state and refuse it if it ends before the mark its record keeps.

    Raises:
        IntegrityError: a value fails its signature, or checkpoints, writes, decisions, jobs, job
            results or memo entries were removed (or rolled back) outside the orchestrator.
    """
    counts = await store.verify_workflow(rec.id)
    if not rec.mark:
        return
    mark = json.loads(rec.mark)
    for what, n in counts.items():
        if n < int(mark.get(what, 0)):
            msg = f"workflow {rec.id!r} had {mark[what]} {what} when it last stopped and has {n}: some were removed"
            raise IntegrityError(msg)
    mark_id = mark.get("checkpoint")
    if not mark_id:
        return
    if not await saver.indexes_namespace(rec.id, ""):
        msg = f"workflow {rec.id!r} stopped at checkpoint {mark_id} but its namespace index lacks it: it was changed"
        raise IntegrityError(msg)
    tup = await saver.aget_tuple(_config(rec.id))
    if tup is None:
        msg = f"workflow {rec.id!r} stopped at checkpoint {mark_id} but has no checkpoints: they were removed"
        raise IntegrityError(msg)
    newest = str(tup.config["configurable"]["checkpoint_id"])
    if newest < mark_id:
        msg = (f"workflow {rec.id!r} stopped at checkpoint {mark_id} but its newest is {newest}: newer "
               "checkpoints were removed")  # fmt: skip
        raise IntegrityError(msg)
    if newest == mark_id and len(tup.pending_writes or []) < int(mark.get("writes", 0)):
        msg = (f"checkpoint {mark_id} of workflow {rec.id!r} had {mark['writes']} pending writes and has "
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
