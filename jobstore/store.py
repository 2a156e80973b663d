"""JobStore: the only code that loads and saves jobs (an eventsourcing Application)."""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from jobstore import archive
from jobstore.boundary import boundary, renew_connections
from jobstore.db import Database, database_url, eventsourcing_env
from jobstore.domain import FINAL, DedupeSlot, Job, Status
from jobstore.errors import (
    AmbiguousJobId,
    DatabaseUnavailable,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    JobStoreError,
    JobUnreadable,
    describe,
)
from jobstore.heads import Heads
from jobstore.migrations import is_current, migrate
from jobstore.recorder import DispatchOutcome, Head
from jobstore.rollout import ROLLOUT_ID, Rollout
from jobstore.routing import Route
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec

log = logging.getLogger(__name__)

# Where enqueued jobs go: one route for all, or one per spec (the router makes them).
Routes = Route | Callable[[JobSpec], Route]
CONFLICT_RETRIES = 5
PREFIX_MATCHES = 5  # jobs listed when a prefix is ambiguous
DISPATCHES_TTL = 1.0  # seconds lane health reuses the dispatch outcomes it read
FINAL_STATES = {status.value for status in FINAL}
UNCOOLED = ("scheduled", "webhook")  # triggers that come for something new each time


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Enqueued:
    job_id: UUID
    created: bool  # False: an active job already had this dedupe key (or, `coalesced`,
    coalesced: bool = False  # one with it completed within the cooldown: that one answers)
    job: Job | None = field(default=None, compare=False, repr=False)  # the new job, saved


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: `won`, or why not (never an exception for a lost race)."""

    job_id: UUID
    won: bool
    attempt: int
    reason: str = ""
    job: Job | None = None  # the running job, when won


def head_of(job: Job) -> Head:
    return Head(
        job.id,
        job.job_type,
        job.repository,
        job.status.value,
        job.lane,
        job.priority,
        job.attempt,
        job.version,
        job.dedupe_key,
        job.parent_id,
        job.not_before,
        job.created_on,
        job.modified_on,
        str(job.params.get("workspace") or job.repository.split("/")[0]),
        job.rule,
    )


@boundary
class JobStore(Application):
    """Every job is an event stream; commands append events after checking the state machine."""

    name = "jobs"  # table names derive from it: jobs_events

    def __init__(
        self, env: EnvType | None = None, settings: Settings | None = None, url: str = ""
    ) -> None:
        env = {
            "AGGREGATE_CACHE_MAXSIZE": "10000",  # loads read only events newer than the cache
            **(env or {}),
            "APPLICATION_RECORDER_TOPIC": "jobstore.recorder:JobRecorder",
        }
        super().__init__(env)
        self.settings = settings or Settings()
        self.url = url  # for components lent its connections (see `database`)
        self._rollout: tuple[float, Rollout] | None = None
        self._dispatches: dict[tuple, tuple[float, dict[str, list[bool]]]] = {}
        self.heads = Heads(self.recorder.datastore, self.recorder.events_table_name)
        self.rng = random.Random()

    def on_read_only(self) -> None:
        """Called by the boundary after a read-only error: the pool's sessions anew."""
        renew_connections(self.recorder.datastore.pool)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # Unlike Application's default, ignore os.environ: jobstore.settings reads it.
        return Environment(name, dict(env or {}))

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        # The transcoder matches exact types; freezegun's datetimes are a subclass.
        frozen = sys.modules.get("freezegun.api")
        if frozen is not None:
            transcoder.types[frozen.FakeDatetime] = transcoder.types[datetime]

    def save_jobs(
        self, *items: Job | DedupeSlot | DomainEventProtocol, dispatches: Sequence = ()
    ) -> None:
        heads = [head_of(item) for item in items if isinstance(item, Job)]
        try:
            self.save(*items, heads=heads, dispatches=dispatches)
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable(f"could not save: {exc}") from None

    def get(self, job_id: UUID | str) -> Job:
        """The job, made from its events. JobUnreadable if they cannot make one (the
        callers that move jobs on quarantine it and go on)."""
        try:
            job_id = job_id if isinstance(job_id, UUID) else UUID(str(job_id))
        except ValueError:
            raise JobNotFound(job_id) from None
        try:
            job = self.repository.get(job_id)
        except AggregateNotFoundError:
            job = self._archived(job_id)
        except (JobStoreError, PersistenceError):
            raise
        except Exception as exc:  # a record no load survives: said, never a crash
            raise JobUnreadable(job_id, exc) from None
        if not isinstance(job, Job):
            raise JobNotFound(job_id)
        return job

    def quarantine(
        self, job_id: UUID, found_by: str, error: str, now: datetime | None = None
    ) -> bool:
        """Sets an unreadable job aside (out of every queue, listed by `quarantined`),
        logged once; True the first time."""
        first = self.heads.quarantine(job_id, found_by, error, now or utcnow())
        if first:
            log.error("job %s quarantined by the %s: %s", job_id, found_by, error)
        return first

    def quarantined(self, limit: int = 100) -> list[dict]:
        """The jobs set aside, most recently seen first. This is a read-only operation."""
        return self.heads.quarantined(limit)

    def resolve(self, ref: UUID | str) -> UUID:
        """The id of the one job `ref` names: a full id, or a unique prefix of one (as
        `bin/jobs list` prints them). This is a read-only operation."""
        if isinstance(ref, UUID):
            return ref
        text = ref.strip().lower()
        with contextlib.suppress(ValueError):
            return UUID(text)
        if not text or not set(text) <= set("0123456789abcdef-"):
            raise InvalidSpec("job id", f"{ref!r} is neither a job id nor the start of one")
        rows = self.heads.with_prefix(text, PREFIX_MATCHES + 1)
        if not rows:
            raise JobNotFound(ref)
        if len(rows) > 1:
            shown = [
                f"{row['job_id']} ({row['job_type']} {row['repository']}, {row['status']})"
                for row in rows[:PREFIX_MATCHES]
            ]
            raise AmbiguousJobId(ref, shown, more=len(rows) > PREFIX_MATCHES)
        return rows[0]["job_id"]

    def rollout(self, fresh: bool = False) -> Rollout:
        """The rollout controls as decided so far (none yet: the environment's). Read at
        most every `settings.rollout_ttl` seconds per process (a worker asks before each
        claim, the dispatcher on every request), unless `fresh`; a change made here is
        seen at once. The caller's copy: changing it changes nothing stored."""
        return copy.deepcopy(self._current_rollout(fresh))

    def lane_stop(self, lane: str) -> str | None:
        """Why `lane` is stopped (bin/jobs rollout stop), or None; read as `rollout()`
        reads, without a copy (a worker asks before every claim)."""
        return self._current_rollout(False).stopped.get(lane)

    def _current_rollout(self, fresh: bool) -> Rollout:
        cached = self._rollout
        if (
            not fresh
            and cached is not None
            and time.monotonic() - cached[0] < self.settings.rollout_ttl
        ):
            return cached[1]
        try:
            found = self.repository.get(ROLLOUT_ID)
        except AggregateNotFoundError:
            found = Rollout.begin(utcnow())
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable(f"could not read the rollout: {exc}") from None
        assert isinstance(found, Rollout)
        self._rollout = (time.monotonic(), found)
        return found

    def change_rollout(self, change: Callable[[Rollout], Any]) -> Rollout:
        """Applies `change` to the rollout controls and saves the new facts; retried if
        another operator changed them meanwhile."""
        for _ in range(CONFLICT_RETRIES):
            rollout = self.rollout(fresh=True)
            change(rollout)
            try:
                self.save_jobs(rollout)
            except IntegrityError:
                continue
            self._rollout = None
            return rollout
        raise DatabaseUnavailable("rollout: too many concurrent changes")

    def rollout_history(self) -> list[Any]:
        try:
            return list(self.events.get(ROLLOUT_ID))
        except AggregateNotFoundError:
            return []

    def get_many(self, job_ids: Sequence[UUID]) -> list[Job]:
        """Loads several jobs with one query; unknown ids are left out."""
        jobs: dict[UUID, Job] = {}
        for stored in self.heads.stored_events(job_ids):
            event = self.mapper.to_domain_event(stored)
            jobs[stored.originator_id] = event.mutate(jobs.get(stored.originator_id))
        return [jobs[job_id] for job_id in job_ids if isinstance(jobs.get(job_id), Job)]

    def history(self, job_id: UUID | str) -> list[Any]:
        job = self.get(job_id)
        # a job cached here before it was archived finds no events in the live log
        return (
            getattr(job, "archived_events", None)
            or list(self.events.get(job.id))
            or self._archived_events(job.id)
        )

    def _archived_events(self, job_id: UUID) -> list[Any]:
        """An archived job's events, read from its chunk ([] if it is not archived)."""
        stored = archive.events_of(self.database("archive"), job_id) or []
        return [self.mapper.to_domain_event(e) for e in stored]

    def _archived(self, job_id: UUID) -> Job:
        """A job whose events are in the archive, made from them (JobNotFound if none)."""
        try:
            events = self._archived_events(job_id)
        except (JobStoreError, PersistenceError):
            raise
        except Exception as exc:  # a chunk no load survives: said, never a crash
            raise JobUnreadable(job_id, exc) from None
        if not events:
            raise JobNotFound(job_id)
        job = None
        for event in events:
            job = event.mutate(job)
        assert job is not None
        job.archived_events = events  # its history, read once
        return job

    # Producers.

    def enqueue(
        self, spec: JobSpec, now: datetime | None = None, route: Route | None = None
    ) -> Enqueued:
        """Enqueues one job (routed to `route` if given); idempotent per dedupe key."""
        return self.enqueue_many([spec], now, route)[0]

    def enqueue_many(
        self, specs: Sequence[JobSpec], now: datetime | None = None, route: Routes | None = None
    ) -> list[Enqueued]:
        """Enqueues (and routes, given `route`) in one transaction; idempotent per dedupe key."""
        now = now or utcnow()
        if len(specs) == 1:
            # Optimistic first try for one job: open its dedupe slot at version 1 without
            # reading it. If the key was ever used, the slot's event collides on the
            # events table's key and we take the reading path below.
            try:
                return self._enqueue_batch(specs, now, route, assume_new=True)
            except IntegrityError:
                pass
        for _ in range(CONFLICT_RETRIES):
            try:
                return self._enqueue_batch(specs, now, route)
            except IntegrityError:
                if len(specs) > 1:  # someone took one of the keys: settle them one by one
                    return [self.enqueue_many([spec], now, route)[0] for spec in specs]
        raise DatabaseUnavailable("enqueue kept conflicting with concurrent enqueues")

    def _enqueue_batch(
        self,
        specs: Sequence[JobSpec],
        now: datetime,
        route: Routes | None,
        assume_new: bool = False,
    ) -> list[Enqueued]:
        # The slot is read first and written at its next version, so the "is its holder
        # still active?" answer below cannot go stale without the save conflicting.
        slot_ids = {spec.dedupe_key: DedupeSlot.id_for(spec.dedupe_key) for spec in specs}
        slots = (
            {}
            if assume_new
            else {
                stored.originator_id: self.mapper.to_domain_event(stored)
                for stored in self.heads.latest_events(list(slot_ids.values()))
            }
        )
        held = [slot.job_id for slot in slots.values()]
        holders = self.heads.active(held)
        cooldown = self.settings.cooldown
        recent = (
            self.heads.completed_since(held, now - timedelta(seconds=cooldown))
            if cooldown and held
            else set()
        )
        results: list[Enqueued] = []
        pending: list[Any] = []
        for spec in specs:
            slot = slots.get(slot_ids[spec.dedupe_key])
            if slot is not None and slot.job_id in holders:
                results.append(Enqueued(slot.job_id, created=False))
                continue
            # asked again just after it ended (a person's repeated click, a client's retry);
            # never the planner's own refresh, which comes for new changes it found, nor a
            # webhook's, which comes for a new delivery
            if slot is not None and slot.job_id in recent and spec.trigger not in UNCOOLED:
                results.append(Enqueued(slot.job_id, created=False, coalesced=True))
                continue
            job = Job.enqueue(uuid4(), spec, now)
            if route is not None:
                r = route if isinstance(route, Route) else route(spec)
                job.route(r.lane, r.rule, r.reason, now, r.fallback_from, r.priority)
            if slot is None:
                taken = DedupeSlot.open(spec.dedupe_key, job.id, now)
                slots[taken.id] = taken.collect_events()[0]
                pending.append(slots[taken.id])
            else:
                taken = DedupeSlot.Taken(
                    originator_id=slot.originator_id,
                    originator_version=slot.originator_version + 1,
                    timestamp=now,
                    job_id=job.id,
                )
                slots[slot.originator_id] = taken
                pending.append(taken)
            holders.add(job.id)
            pending.append(job)
            results.append(Enqueued(job.id, created=True, job=job))
        if pending:
            self.save_jobs(*pending)
        return results

    # Commands on one job. Each reloads and retries if another writer got there first.

    def _update(
        self,
        job_id: UUID | str,
        command: Callable[[Job], Any],
        outcome: Callable | None = None,
        held: Job | None = None,
    ) -> Job:
        """Applies `command` and saves; `held` is the job as the caller last saw it (a
        worker's own attempt): tried first without reading, read again on a conflict."""
        for tries in range(CONFLICT_RETRIES):
            job = held.fork() if held is not None and tries == 0 else self.get(job_id)
            command(job)
            try:
                self.save_jobs(job, dispatches=[outcome(job)] if outcome else ())
            except IntegrityError:
                continue
            return job
        raise DatabaseUnavailable(f"job {job_id}: too many concurrent writers")

    @staticmethod
    def _check_attempt(job: Job, attempt: int | None, action: str) -> None:
        if attempt is not None and attempt != job.attempt:
            raise InvalidTransition(
                job.id, f"on attempt {job.attempt}", f"{action} attempt {attempt}"
            )

    def route(self, job_id: UUID | str, route: Route, now: datetime | None = None) -> Job:
        now = now or utcnow()
        return self._update(
            job_id,
            lambda job: job.route(
                route.lane, route.rule, route.reason, now, route.fallback_from, route.priority
            ),
        )

    def dispatched(self, job_id: UUID | str, ref: str, now: datetime | None = None) -> Job:
        now = now or utcnow()
        self._dispatches.clear()
        return self._update(
            job_id,
            lambda job: job.dispatch(ref, now),
            lambda job: DispatchOutcome(job.lane, job.id, True, None, now),
        )

    def dispatch_failed(self, job_id: UUID | str, error: str, now: datetime | None = None) -> Job:
        """Records that the lane did not take the job (it is routed again, on the same lane)."""
        now = now or utcnow()
        self._dispatches.clear()
        return self._update(
            job_id,
            lambda job: job.dispatch_failed(error, now),
            lambda job: DispatchOutcome(job.lane, job.id, False, error[:500], now),
        )

    def claim(
        self,
        job_id: UUID | str,
        worker: str,
        now: datetime | None = None,
        attempt: int | None = None,
        lane: str | None = None,
    ) -> Claim:
        """Starts the job's current attempt for `worker`; exactly one claimant wins.

        A conflicting write is not always a rival claim: a lane that starts the job at once
        can race the dispatcher's own Dispatched event. So on a conflict the job is read
        again, and claimed if it is still waiting; a rival's Started shows up as running.
        """
        for _ in range(CONFLICT_RETRIES):
            job = self.get(job_id)
            if attempt is not None and attempt != job.attempt:
                return Claim(job.id, False, job.attempt, f"attempt {attempt} is over")
            if job.status.value not in ("routed", "dispatched"):
                holder = f" by {job.worker}" if job.worker else ""
                return Claim(job.id, False, job.attempt, f"already {job.status.value}{holder}")
            job.start(worker, now or utcnow(), lane)
            try:
                self.save_jobs(job)
            except IntegrityError:
                continue  # someone wrote first: look again
            return Claim(job.id, True, job.attempt, job=job)
        raise DatabaseUnavailable(f"job {job_id}: too many concurrent writers")

    def claim_notified(
        self,
        job_id: UUID | str,
        version: int,
        attempt: int,
        worker: str,
        lane: str,
        now: datetime | None = None,
    ) -> Claim:
        """Claims a job a notification named (routed at `version` on `attempt`): one
        transaction that locks, reads and starts it; lost if it moved on meanwhile."""
        job_id = job_id if isinstance(job_id, UUID) else UUID(str(job_id))
        jobs = self._claim(lane, worker, now or utcnow(), 1, job_id)
        if jobs and jobs[0].attempt == attempt:
            return Claim(job_id, True, attempt, job=jobs[0])
        if jobs:  # a later attempt than the notification named: still ours now
            return Claim(job_id, True, jobs[0].attempt, job=jobs[0])
        return self.claim(job_id, worker, now, attempt=attempt, lane=lane)

    def claim_next(
        self, lane: str, worker: str, now: datetime | None = None, limit: int = 1
    ) -> list[Job]:
        """Claims up to `limit` waiting jobs of `lane`, best first, in one transaction that
        reads and starts them: concurrent claimers take different jobs."""
        return self._claim(lane, worker, now or utcnow(), limit, None)

    def _claim(
        self, lane: str, worker: str, now: datetime, limit: int, job_id: UUID | None
    ) -> list[Job]:
        started: list[Job] = []
        unreadable: dict[UUID, str] = {}

        def start(read: list[StoredEvent]) -> tuple[list[StoredEvent], list[Head]]:
            jobs: dict[UUID, Any] = {}
            for stored in read:
                if stored.originator_id in unreadable:
                    continue
                try:
                    event = self.mapper.to_domain_event(stored)
                    jobs[stored.originator_id] = event.mutate(jobs.get(stored.originator_id))
                except Exception as exc:  # a record no load survives: not claimed, set aside
                    unreadable[stored.originator_id] = describe(exc)
                    jobs.pop(stored.originator_id, None)
            pending: list[StoredEvent] = []
            heads: list[Head] = []
            for job in jobs.values():
                if isinstance(job, Job) and job.status.value in ("routed", "dispatched"):
                    job.start(worker, now, lane)
                    pending += [self.mapper.to_stored_event(e) for e in job.collect_events()]
                    heads.append(head_of(job))
                    started.append(job)
            return pending, heads

        try:
            self.recorder.claim(lane, limit, job_id, start)
        except IntegrityError:  # one moved on past the lock: settle them one by one
            won = [self.claim(j.id, worker, now, lane=lane) for j in started]
            return [c.job for c in won if c.won and c.job is not None]
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable(f"could not claim: {exc}") from None
        for bad, error in unreadable.items():
            self.quarantine(bad, f"worker {worker}", error, now)
        if unreadable and not started and job_id is None:  # the next in the queue instead
            return self._claim(lane, worker, now, limit, None)
        return started

    def progress(
        self,
        job_id: UUID | str,
        done: int,
        *,
        total: int | None = None,
        cursor: str | None = None,
        api_points: int = 0,
        note: str = "",
        attempt: int | None = None,
        now: datetime | None = None,
        held: Job | None = None,
    ) -> Job:
        """Checkpoints a running job; the cursor is where a later attempt resumes."""

        def command(job: Job) -> None:
            self._check_attempt(job, attempt, "checkpoint")
            job.progress(now or utcnow(), done, total, cursor, api_points, note)

        return self._update(job_id, command, held=held)

    def complete(
        self,
        job_id: UUID | str,
        items: int,
        *,
        api_points: int = 0,
        summary: dict | None = None,
        attempt: int | None = None,
        now: datetime | None = None,
        held: Job | None = None,
    ) -> Job:
        def command(job: Job) -> None:
            self._check_attempt(job, attempt, "complete")
            job.complete(now or utcnow(), items, api_points, summary)

        return self._update(job_id, command, held=held)

    def complete_many(
        self, jobs: Iterable[Job], items: int = 0, now: datetime | None = None
    ) -> None:
        """Completes claimed jobs in one transaction (for batches of short jobs)."""
        now = now or utcnow()
        batch = list(jobs)
        for job in batch:
            job.complete(now, items)
        try:
            self.save_jobs(*batch)
        except IntegrityError:  # one was swept or cancelled meanwhile: settle one by one
            for job in batch:
                # An attempt ended by someone else (sweeper, cancel) stays ended; its events say so.
                with contextlib.suppress(InvalidTransition):
                    self.complete(job.id, items, attempt=job.attempt, now=now)

    def fail(
        self,
        job_id: UUID | str,
        error_type: str,
        message: str,
        *,
        retryable: bool = True,
        attempt: int | None = None,
        now: datetime | None = None,
        held: Job | None = None,
    ) -> Job:
        """Records a failure; a retry is scheduled (same job, next attempt) while allowed."""

        def command(job: Job) -> None:
            self._check_attempt(job, attempt, "fail")
            job.fail(error_type, message, now or utcnow(), self.settings.retry, retryable, self.rng)

        return self._update(job_id, command, held=held)

    def reschedule(
        self,
        job_id: UUID | str,
        not_before: datetime,
        *,
        attempt: int | None = None,
        now: datetime | None = None,
        held: Job | None = None,
    ) -> Job:
        """Ends a running attempt without counting a failure, e.g. until a rate-limit reset."""

        def command(job: Job) -> None:
            self._check_attempt(job, attempt, "reschedule")
            job.reschedule(not_before, now or utcnow())

        return self._update(job_id, command, held=held)

    def wait_for_children(
        self, job_id: UUID | str, not_before: datetime, *, attempt: int, now: datetime, held: Job
    ) -> Job:
        """A parent looks at its child jobs again at `not_before`, or at once if they have
        all finished by now: the last one's wake may have found the parent still running
        its look (so a parent can wait long between looks and still miss no wake)."""
        job = self.reschedule(job_id, not_before, attempt=attempt, now=now, held=held)
        if not self.heads.unfinished_children(job.id):
            self.wake(job.id, "its child jobs finished", now)
        return job

    def wake(self, job_id: UUID | str, reason: str, now: datetime | None = None) -> bool:
        """Routes a job waiting for its retry time now, on its lane (a parent whose child
        jobs have all finished); False if it was not waiting."""
        woke = False

        def command(job: Job) -> None:
            nonlocal woke
            woke = job.status is Status.RETRY_SCHEDULED
            if woke:
                job.route(job.lane or "local", job.rule or "retry", reason, now or utcnow())

        self._update(job_id, command)
        return woke

    def wake_parent(self, job: Job, now: datetime | None = None) -> bool:
        """Wakes `job`'s parent once every child job has finished."""
        if job.parent_id is None:
            return False
        if self.heads.unfinished_children(job.parent_id):
            return False
        children = len(self.heads.children(job.parent_id))  # once, as the last one ends
        return self.wake(job.parent_id, f"its {children} child jobs finished", now)

    def cancel(self, job_id: UUID | str, reason: str, now: datetime | None = None) -> Job:
        return self._update(job_id, lambda job: job.cancel(reason, now or utcnow()))

    def replay(self, job_id: UUID | str, now: datetime | None = None) -> Job | None:
        """Schedules one more attempt of a job that failed for good, due now, and takes its
        dedupe slot back in the same transaction. Returns None, writing nothing, when the
        job has not failed (so a second replay changes nothing) or when a newer job with
        its dedupe key is active (replaying would do that work twice)."""
        now = now or utcnow()
        for _ in range(CONFLICT_RETRIES):
            job = self.get(job_id)
            if self.heads.is_archived(job.id):  # (a job cached before it was archived)
                raise InvalidTransition(job.id, "archived", "replay (enqueue its work anew)")
            if job.status is not Status.FAILED:
                return None
            slot_id = DedupeSlot.id_for(job.dedupe_key)
            latest = {
                stored.originator_id: self.mapper.to_domain_event(stored)
                for stored in self.heads.latest_events([slot_id])
            }.get(slot_id)
            holder = getattr(latest, "job_id", None)
            if holder not in (None, job.id) and self.heads.active([holder]):
                return None
            job.replay(now)
            pending: list[Any] = [job]
            if latest is None:
                pending.append(DedupeSlot.open(job.dedupe_key, job.id, now))
            elif holder != job.id:
                pending.append(
                    DedupeSlot.Taken(
                        originator_id=slot_id,
                        originator_version=latest.originator_version + 1,
                        timestamp=now,
                        job_id=job.id,
                    )
                )
            try:
                self.save_jobs(*pending)
            except IntegrityError:
                continue  # the job or its slot moved meanwhile (or it was archived): again
            return job
        raise DatabaseUnavailable(f"job {job_id}: too many concurrent writers")

    def resume_cursor(self, job_id: UUID | str) -> str | None:
        """Where the next attempt starts: the last checkpointed cursor, or None."""
        return self.get(job_id).cursor

    def sweep_stale(self, now: datetime | None = None) -> list[UUID]:
        """Fails running jobs silent past their lane's lease as `stale`; returns their ids."""
        now = now or utcnow()
        swept = []
        for job_id in self.heads.stale_running(now, self.settings):
            try:
                job = self.get(job_id)
            except JobUnreadable as exc:
                self.quarantine(job_id, "sweeper", exc.error, now)
                continue
            lease = self.settings.lease(job.lane)
            if job.status.value != "running" or (now - job.last_event_at).total_seconds() <= lease:
                continue  # it moved on since the query
            silent = int((now - job.last_event_at).total_seconds())
            job.fail(
                "stale",
                f"no event from {job.worker} for {silent}s (lease {lease:g}s)",
                now,
                self.settings.retry,
                True,
                self.rng,
            )
            try:
                self.save_jobs(job)
            except IntegrityError:
                continue  # the worker spoke up just now: not stale
            swept.append(job_id)
        return swept

    def due_retries(self, now: datetime | None = None) -> list[UUID]:
        """Jobs whose retry time has come; the sweeper routes them again."""
        return self.heads.due_retries(now or utcnow())

    # What the rest of the product asks of the jobs, without SQL of its own.

    def active(self, job_ids: Sequence[UUID]) -> set[UUID]:
        """Those of `job_ids` that have not ended. This is a read-only operation."""
        return self.heads.active(job_ids)

    def children(self, parent_id: UUID) -> dict[UUID, str]:
        """The status of each child job of `parent_id`. This is a read-only operation."""
        return self.heads.children(parent_id)

    def stuck(self, now: datetime) -> list[UUID]:
        """Jobs silent past their lane's limit: running past the lease, or dispatched and
        not started within the start deadline. This is a read-only operation."""
        return self.heads.stale_running(now, self.settings) + self.heads.dispatched_before(
            self.settings.start_deadlines, now
        )

    def head(self, job_id: UUID) -> tuple[int, str] | None:
        """The job's current (version, status), None if there is no such job; one indexed
        read, never a replay. This is a read-only operation."""
        versions = self.heads.head_states([job_id])
        return versions.get(job_id)

    def events_since(self, job_id: UUID, version: int) -> list[Any]:
        """The job's events after `version`, oldest first."""
        return list(self.events.get(job_id, gt=version))

    def archived_since(self, job_id: UUID, version: int) -> list[Any]:
        """An archived job's events after `version`, read from the archive."""
        return [e for e in self._archived_events(job_id) if e.originator_version > version]

    def recent_dispatches(
        self, window: float, per_lane: int, now: datetime
    ) -> dict[str, list[bool]]:
        """Each lane's latest dispatch outcomes within `window` seconds (True: taken),
        newest first: what lane health is judged on. Read at most once a second per
        process, unless this process dispatched since. This is a read-only operation."""
        key = (window, per_lane, int(now.timestamp()))  # the same second of `now`
        cached = self._dispatches.get(key)
        if cached is not None and time.monotonic() - cached[0] < DISPATCHES_TTL:
            return cached[1]
        found = self.heads.recent_dispatches(now - timedelta(seconds=window), per_lane)
        self._dispatches = {key: (time.monotonic(), found)}
        return found

    def repository_moved(self, old: str, new: str, at: datetime) -> int:
        """A repository renamed or transferred on GitHub: the jobs made before `at` under
        its old name read under the new one in job_heads and capture_jobs (their events
        keep the name they were made with; a rebuild of the views applies the moves
        recorded in repository_events again). Returns how many jobs moved."""
        return self.heads.rename_repository(old, new, at)

    def database(self, component: str) -> Database:
        """The store's connections lent to another component (its own tables, one unit of
        work per transaction): one pool per process, not one per holder."""
        return Database(self.url, component, pool=self.recorder.datastore.pool)


def open_store(settings: Settings | None = None, url: str | None = None) -> JobStore:
    """The job store on DATABASE_URL or the embedded server, migrated and ready."""
    settings = settings or load()
    url = url or database_url(settings)
    env = {
        **eventsourcing_env(url, pool_size=settings.pool_size, pool_wait=settings.pool_wait),
        "CREATE_TABLE": "n",
    }
    store = JobStore(env, settings, url)
    try:
        # Asked on the store's own connection (a script needs no other); a database that
        # is not current is migrated on a connection of the migration's own.
        with store.database("migrate").connection() as conn:
            current = is_current(conn)
        if not current:
            migrate(url)
            # eventsourcing looks its row type up when the store is made: made anew
            store.recorder.datastore.register_type_adapters()
    except BaseException:
        store.close()
        raise
    return store
