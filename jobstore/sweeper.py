"""The sweeper: the periodic pass that keeps every job moving.

One pass: fail running jobs silent past their lane's lease (stale, retried from their
cursor); route again the retries whose time has come; treat jobs dispatched but never
started within their lane's start deadline as failed dispatches (the lane accepted them
and never ran them: the classic silent failure); then dispatch everything left routed,
re-dispatching and falling back as the router says; last, archive a share of the jobs
finished longer ago than JOBSTORE_ARCHIVE_AFTER_DAYS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jobstore import archive
from jobstore.dispatcher import Dispatcher, Sent, batchable
from jobstore.domain import Job, Status
from jobstore.errors import InvalidTransition, JobUnreadable
from jobstore.heads import Waiting
from jobstore.routing import ACTIONS, INNGEST, LOCAL, Route
from jobstore.settings import Settings
from jobstore.store import JobStore

# Rules that pin a job to its lane: the operator chose it, or its parent's run plans it.
PINNED = ("explicit", "parent")
DISPATCH_HISTORY = 86_400.0  # seconds of lane_dispatches kept (lane health reads minutes)


@dataclass
class SweepReport:
    stale: list[UUID] = field(default_factory=list)
    retried: list[UUID] = field(default_factory=list)
    undelivered: list[UUID] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    quarantined: list[UUID] = field(default_factory=list)
    archived: int = 0  # finished jobs whose events moved to the archive
    waiting: int = 0  # routed jobs left waiting for room on a full lane (not a failure)

    def as_json(self) -> dict:
        return {
            "stale": [str(j) for j in self.stale],
            "retried": [str(j) for j in self.retried],
            "undelivered": [str(j) for j in self.undelivered],
            "dispatched": [str(s.job_id) for s in self.sent if s.ok],
            "not_dispatched": {str(s.job_id): s.detail for s in self.sent if not s.ok},
            "fallbacks": {str(s.job_id): s.lane for s in self.sent if s.fallback_from},
            "quarantined": [str(j) for j in self.quarantined],
            "archived": self.archived,
            "waiting_for_capacity": self.waiting,
        }


def sweep(dispatcher: Dispatcher, now: datetime, limit: int = 500) -> SweepReport:
    """One pass over the store; safe to run from several places at once (every write is a
    versioned append, and each step re-checks the job's state)."""
    store = dispatcher.store
    report = SweepReport(stale=store.sweep_stale(now))
    keep = max(store.settings.health.window * 10, DISPATCH_HISTORY)
    store.heads.prune_dispatches(now - timedelta(seconds=keep))
    store.heads.prune_batches(now - timedelta(seconds=keep))
    down = dispatcher.down(now)
    for job_id in store.due_retries(now)[:limit]:
        with set_aside(store, job_id, now, report):
            retry(dispatcher, job_id, now, down, report)
    deadlines = dict(store.settings.start_deadlines)
    for job_id in store.heads.dispatched_before(deadlines, now)[:limit]:
        with set_aside(store, job_id, now, report):
            undelivered(store, job_id, now, report)
    full: set[str] = set()  # lanes found holding all they may run: the rest wait there
    riders: list[UUID] = []  # small refreshes for Actions, sent in batches at the end
    for head in store.heads.waiting([INNGEST, ACTIONS], limit):
        if head.lane in full:  # counted from its head: a full lane's queue is not read
            report.waiting += 1
            continue
        with set_aside(store, head.job_id, now, report):
            # its head says whether it waits for its parent's run or a batch: its events
            # are read only to send it (or for a head from before schema/030)
            known = head if head.rule is not None else store.get(head.job_id)
            if planned_by_parent(known, now, store.settings):
                continue
            if batchable(known, store.settings):
                riders.append(head.job_id)
                continue
            sent = dispatcher.send(head.job_id, now, down)
            if sent.full and sent.lane:
                full.add(sent.lane)
                report.waiting += 1
            else:
                report.sent.append(sent)
    if riders and ACTIONS not in full:
        jobs = []
        for job_id in riders:
            with set_aside(store, job_id, now, report):
                jobs.append(store.get(job_id))
        batches = dispatcher.send_batches(jobs, now, down)
        report.sent += [s for s in batches if not s.full]
        report.waiting += len(jobs) - sum(s.ok for s in batches)
    elif riders:
        report.waiting += len(riders)
    settings = store.settings
    if settings.archive_after_days > 0 and settings.archive_per_sweep > 0:
        report.archived = archive.archive(
            store.database("archive"),
            timedelta(days=settings.archive_after_days),
            now,
            limit=settings.archive_per_sweep,
        ).jobs
    return report


@contextmanager
def set_aside(store: JobStore, job_id: UUID, now: datetime, report: SweepReport) -> Iterator[None]:
    """One job's step of the pass: a job that cannot be read is quarantined and the pass
    goes on (one bad record must not stop every sweep)."""
    try:
        yield
    except JobUnreadable as exc:
        store.quarantine(job_id, "sweeper", exc.error, now)
        report.quarantined.append(job_id)


def retry(
    dispatcher: Dispatcher, job_id: UUID, now: datetime, down: Any, report: SweepReport
) -> None:
    """A retry whose time has come, routed again (to its pinned lane, or as the router says)."""
    store = dispatcher.store
    job = store.get(job_id)
    if job.status is not Status.RETRY_SCHEDULED:
        return
    try:
        if job.rule in PINNED:
            store.route(
                job.id,
                Route(job.lane or LOCAL, job.rule or "retry", job.reason or "retry"),
                now,
            )
        else:
            dispatcher.reroute(job, now, down, always=True)
    except InvalidTransition:
        return  # someone else routed or cancelled it meanwhile
    report.retried.append(job_id)


def undelivered(store: JobStore, job_id: UUID, now: datetime, report: SweepReport) -> None:
    """A dispatch its lane accepted and never started within the start deadline: failed."""
    job = store.get(job_id)
    waited = (now - job.last_event_at).total_seconds()
    if job.parent_id is not None and job.lane == ACTIONS:
        # planned into a run's matrix, it waits for a leg (max-parallel at a time): the
        # deadline counts from the last move of any of the run's children, so a run still
        # draining them is not read as a lost dispatch
        moved = store.heads.latest_child_event(job.parent_id) or job.last_event_at
        waited = min(waited, (now - moved).total_seconds())
    elif job.lane == ACTIONS:
        # riding a batch's run (lane_batches), it waits for the jobs before it: likewise
        # from their moves (None: it rides no batch)
        moved = store.heads.latest_batch_event(job.id, job.attempt) or job.last_event_at
        waited = min(waited, (now - moved).total_seconds())
    if job.status is not Status.DISPATCHED or waited <= store.settings.start_deadline(job.lane):
        return
    message = f"accepted by {job.lane} ({job.ref}) but not started within {waited:.0f}s"
    try:
        store.dispatch_failed(job.id, message, now)
    except InvalidTransition:
        return  # it started just now
    report.undelivered.append(job_id)


def planned_by_parent(job: Job | Waiting, now: datetime, settings: Settings) -> bool:
    """A child job an Actions parent just planned: its parent's run is about to record it
    as dispatched to its matrix. Left alone for a start deadline; after that the sweeper
    dispatches it on its own (the parent's run never took it)."""
    if job.rule != "parent" or job.lane != ACTIONS or job.attempt != 1:
        return False
    if not settings.lanes.fans_out(job.job_type):
        return False  # its parent's workflow has no matrix: the sweeper sends it
    return (now - job.last_event_at).total_seconds() < settings.start_deadline(ACTIONS)
