"""Jobs the Task Service lost, found from what it says and submitted again exactly once.

A restarted Task Service (or one that never got a job) does not know a job we wait for: its webhook will
never come. It used to be given up only after a 5-minute grace. Now the waits of one project share one
listing of the project's tasks at a time (`TaskLists`: single flight, reused for a second), and a job is
lost when two *conclusive* listings, started at least `confirm_seconds` apart and after the job was
known to the service, do not show it (`JobWatch`). A listing is conclusive when every page answered,
the total stayed the same from the first page to the last and as many rows came as the total said;
anything else neither counts nor clears, and after `TASK_UNKNOWN_GRACE_SECONDS` of absences the old
rule still applies ("the service cannot tell").

A lost job is submitted again by whichever run swaps the step's job entry first (`Healing.resubmit`: a
compare-and-set on the entry's stored bytes, so one run, even a zombie whose lease lapsed, wins); the
others wait for the winner's job. A job any listing still shows is never resubmitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from adapters import ServiceGuard, TaskServiceClient, TransientError, WorkflowStore, tracing
from graphs import BudgetPort
from server.telemetry import Metrics

__all__ = ["Healing", "JobLost", "JobWatch", "Listing", "TaskLists"]

log = structlog.get_logger(__name__)

_PAGE = 100
OnWait = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Listing:
    """One listing of a project's tasks: when it started (loop time), its rows by task id, and whether it is
    conclusive (complete and consistent)."""

    started: float
    rows: dict[str, dict[str, Any]]
    conclusive: bool


class TaskLists:
    """The project's task list as every waiting job of this process sees it: one listing in flight per
    project, shared by its waiters and reused while it is younger than `reuse_seconds`.

    Args:
        client: the Task Service.
        guard: its breaker, retries and timeout.
        reuse_seconds: how long a listing answers the waiters that ask after it started.
    """

    def __init__(self, client: TaskServiceClient, guard: ServiceGuard, *, reuse_seconds: float = 1.0) -> None:
        self._client = client
        self._guard = guard
        self._reuse = reuse_seconds
        self._last: dict[str, Listing] = {}
        self._flying: dict[str, asyncio.Task[Listing]] = {}
        self._waiting: dict[str, list[OnWait]] = {}
        self.listings = 0  # made (not reused), for tests and metrics

    async def listing(self, project: str, *, after: float, on_wait: OnWait | None = None) -> Listing:
        """A listing of the project started at or after the loop time `after` (shared when one is flying);
        `on_wait` hears why it waits (the service's breaker is open), as each waiter's workflow shows it."""
        loop = asyncio.get_running_loop()
        if after > loop.time():  # a listing that must not start before then (an absence's confirmation)
            await asyncio.sleep(after - loop.time())
        last = self._last.get(project)
        if last is not None and last.started >= after and loop.time() - last.started < self._reuse:
            return last
        flying = self._flying.get(project)
        if flying is None or flying.done():
            flying = self._flying[project] = loop.create_task(self._list(project))
        waiting = self._waiting.setdefault(project, [])
        if on_wait is not None:
            waiting.append(on_wait)
        try:
            got = await asyncio.shield(flying)
        finally:
            if on_wait is not None and on_wait in waiting:
                waiting.remove(on_wait)
        if got.started < after:  # it started before what the caller needs to see: one more
            return await self.listing(project, after=after, on_wait=on_wait)
        return got

    async def _list(self, project: str) -> Listing:
        started = asyncio.get_running_loop().time()

        async def tell(reason: str) -> None:
            for told in list(self._waiting.get(project, ())):
                with contextlib.suppress(Exception):
                    await told(reason)

        try:
            listing = await self._guard.call(lambda: self._pages(project, started), on_wait=tell,
                                             operation="list_tasks")  # fmt: skip
        finally:
            self._flying.pop(project, None)
        self.listings += 1
        self._last[project] = listing
        return listing

    async def _pages(self, project: str, started: float) -> Listing:
        rows: dict[str, dict[str, Any]] = {}
        total: int | None = None
        fetched = 0
        page = 1
        consistent = True
        while True:
            data = await self._client.list_page(project, page=page, limit=_PAGE)
            meta = data.get("pagination") or {}
            now_total = int(meta.get("total", -1))
            consistent = consistent and (total is None or now_total == total) and now_total >= 0
            total = now_total if total is None else total
            batch = data.get("tasks") or []
            fetched += len(batch)
            rows.update({str(r.get("task_id")): r for r in batch})
            if page >= int(meta.get("total_pages", 1) or 1) or not batch:
                break
            page += 1
        return Listing(started, rows, consistent and fetched == total and len(rows) == total)


@dataclass
class JobWatch:
    """What the listings said of one job while its step waits for it.

    Args:
        lists: the shared listings.
        project: the job's project.
        task_id: the job.
        since: loop time from which the service knew the job (its submit answered, or the wait began).
        confirm_seconds: how far apart the listings that find it absent must start.
        listings_needed: conclusive absences that make it lost.
    """

    lists: TaskLists
    project: str
    task_id: str
    since: float
    confirm_seconds: float = 2.0
    listings_needed: int = 2
    absences: list[float] = field(default_factory=list)

    async def look(self, on_wait: OnWait | None = None) -> dict[str, Any] | None:
        """The job's row in a listing started now or later, or None when the listing did not show it."""
        listing = await self.lists.listing(
            self.project, after=max(self.since, self._next_start()), on_wait=on_wait
        )
        row = listing.rows.get(self.task_id)
        if row is not None:
            self.absences.clear()  # it is there: whatever was missed before was not a loss
        elif listing.conclusive and (
            not self.absences or listing.started - self.absences[-1] >= self.confirm_seconds
        ):
            self.absences.append(listing.started)
        return row

    def _next_start(self) -> float:
        return self.absences[-1] + self.confirm_seconds if self.absences else 0.0

    @property
    def lost(self) -> bool:
        """Whether enough conclusive listings, far enough apart, did not show it."""
        return len(self.absences) >= self.listings_needed

    def next_look(self, planned: float) -> float:
        """When to look again: sooner than planned while an absence waits to be confirmed."""
        return min(planned, self._next_start()) if self.absences else planned


class JobLost(Exception):
    """The service does not know a job its step waits for (told by conclusive listings)."""

    def __init__(self, task_id: str, listings: int, reason: str) -> None:
        super().__init__(
            f"task {task_id} is unknown to the Task Service ({listings} complete listings): {reason}"
        )
        self.task_id, self.listings, self.reason = task_id, listings, reason


class Healing:
    """Resubmits the jobs the Task Service lost, once per loss, whoever notices.

    Args:
        store: the workflows' job entries (the compare-and-set) and events.
        lists: the shared listings.
        metrics: mo_jobs_lost_total.
        confirm_seconds, listings_needed: the rule of `JobWatch`.
        adopt_seconds: how long a run that lost the swap waits for the winner's job id before giving up
            (the step's retry then finds the entry and goes on from it).
    """

    def __init__(
        self,
        store: WorkflowStore,
        lists: TaskLists,
        metrics: Metrics,
        *,
        confirm_seconds: float = 2.0,
        listings_needed: int = 2,
        adopt_seconds: float = 30.0,
    ) -> None:
        self._store = store
        self.lists = lists
        self._metrics = metrics
        self._confirm = confirm_seconds
        self._needed = listings_needed
        self._adopt = adopt_seconds

    def watch(self, project: str, task_id: str, since: float) -> JobWatch:
        """The watch of one job's wait."""
        return JobWatch(self.lists, project, task_id, since, self._confirm, self._needed)

    def lost(self, watch: JobWatch, outage: bool) -> JobLost:
        """The loss a watch found (`outage`: the service failed since the job was submitted)."""
        reason = "lost_after_outage" if outage else "unknown_to_service"
        return JobLost(watch.task_id, len(watch.absences), reason)

    async def resubmit(
        self,
        wid: str,
        key: str,
        lost: JobLost,
        submit: Callable[[str], Awaitable[str]],
        budget: BudgetPort | None,
        *,
        nonce: str,
    ) -> str:
        """The job to wait for instead of a lost one: submitted here under `nonce` if this run swaps the step's
        entry first (`submit(nonce)` submits and records the new job), else the one the winner submitted.

        Raises:
            TransientError: the winner's job id did not appear within `adopt_seconds`.
            BudgetExceededError: a new job would go over the workflow's outside-jobs budget.
        """
        entry = await self._store.job_entry_raw(wid, key)
        if entry is None or entry[2] != lost.task_id:
            return await self._adopted(wid, key, lost.task_id)  # already replaced (or being replaced)
        if not await self._store.replace_job(wid, key, entry[0], nonce):
            return await self._adopted(wid, key, lost.task_id)
        self._metrics.jobs_lost.labels(lost.reason).inc()
        log.warning("jobs.lost", step=key, task_id=lost.task_id, reason=lost.reason, listings=lost.listings)
        tracing.event("job.lost", mo_task_id=lost.task_id, mo_reason=lost.reason)
        # The event log is for people: the resubmission goes on without it.
        with contextlib.suppress(Exception):
            await self._store.update(wid, {}, event="job.lost", event_data={
                "step": key, "task_id": lost.task_id, "reason": lost.reason, "listings": lost.listings})  # fmt: skip
        if budget is not None:
            await budget.charge("outside_jobs", where=key)
        return await submit(nonce)

    async def _adopted(self, wid: str, key: str, lost_task: str) -> str:
        """The job another run submitted in place of `lost_task` (waiting for its id to be recorded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._adopt
        while True:
            entry = await self._store.job_entry_raw(wid, key)
            if entry is not None and entry[2] and entry[2] != lost_task:
                log.info("jobs.lost_resubmitted_elsewhere", step=key, task_id=entry[2], lost=lost_task)
                return entry[2]
            if loop.time() >= deadline:
                msg = f"task {lost_task} was lost and another run took over its resubmission, which did not finish"
                raise TransientError(msg)
            await asyncio.sleep(0.25)
