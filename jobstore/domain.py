"""The Job aggregate, its events and state machine, and the dedupe slot; pure, no I/O.

Event class paths (for example `jobstore.domain:Job.Started`) are stored with every
event: moving or renaming one needs a registered old topic.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from jobstore.errors import InvalidTransition
from jobstore.spec import JobSpec

DEDUPE_NAMESPACE = uuid5(NAMESPACE_URL, "https://prcapture.invalid/dedupe")


class Status(StrEnum):
    """Where a job is in its life. Completed, failed and cancelled are final."""

    QUEUED = "queued"
    ROUTED = "routed"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    RETRY_SCHEDULED = "retry_scheduled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
S = Status
# The state machine: each command and the states it may start from.
ALLOWED: dict[str, frozenset[Status]] = {
    "route": frozenset({S.QUEUED, S.ROUTED, S.RETRY_SCHEDULED}),
    "dispatch": frozenset({S.ROUTED}),
    "record a failed dispatch": frozenset({S.ROUTED, S.DISPATCHED}),
    "claim": frozenset({S.ROUTED, S.DISPATCHED}),
    "progress": frozenset({S.RUNNING}),
    "complete": frozenset({S.RUNNING}),
    "fail": frozenset({S.RUNNING}),
    "reschedule": frozenset({S.RUNNING}),
    "cancel": frozenset(set(Status) - FINAL),
    "replay": frozenset({S.FAILED}),
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed job is tried again."""

    max_attempts: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0


def retry_delay(failures: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** max(failures - 1, 0))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


class Job(Aggregate):
    """One unit of capture work; every change is an event in its own stream."""

    class Queued(Aggregate.Created):
        job_type: str
        repository: str
        since: datetime | None
        until: datetime | None
        pr_numbers: list[int]
        max_items: int | None
        trigger: str
        priority: str
        dedupe_key: str
        parent_id: UUID | None
        params: dict[str, Any]

    def __init__(
        self,
        job_type: str,
        repository: str,
        since: datetime | None,
        until: datetime | None,
        pr_numbers: list[int],
        max_items: int | None,
        trigger: str,
        priority: str,
        dedupe_key: str,
        parent_id: UUID | None,
        params: dict[str, Any],
    ) -> None:
        self.job_type = job_type
        self.repository = repository
        self.since = since
        self.until = until
        self.pr_numbers = list(pr_numbers)
        self.max_items = max_items
        self.trigger = trigger
        self.priority = priority
        self.dedupe_key = dedupe_key
        self.parent_id = parent_id
        self.params = dict(params)
        self.status = Status.QUEUED
        self.lane: str | None = None
        self.rule: str | None = None
        self.reason: str | None = None
        self.attempt = 1
        self.failures = 0
        self.worker: str | None = None
        self.ref: str | None = None
        self.cursor: str | None = None
        self.done = 0
        self.total: int | None = None
        self.api_points = 0
        self.items = 0
        self.not_before: datetime | None = None
        self.error: str | None = None
        self.lane_failures = 0  # failed dispatches to the current lane since it was routed
        self.dispatches = 0  # lanes that took this attempt (more than one: a re-dispatch)

    @classmethod
    def enqueue(cls, job_id: UUID, spec: JobSpec, now: datetime) -> Job:
        since, until = spec.window(now)
        return cls._create(
            cls.Queued,
            id=job_id,
            timestamp=now,
            job_type=spec.job_type,
            repository=spec.repository,
            since=since,
            until=until,
            pr_numbers=list(spec.pr_numbers),
            max_items=spec.max_items,
            trigger=spec.trigger,
            priority=spec.priority,
            dedupe_key=spec.dedupe_key,
            parent_id=spec.parent_id,
            params=dict(spec.params),
        )

    def fork(self) -> Job:
        """A copy a command may change while this one stays as it is (to try a command,
        and keep this one should its save fail). Attributes of a job are only ever
        replaced, never changed in place, so a shallow copy with no pending events will
        do (tests/jobstore/test_domain.py holds it to that)."""
        clone = copy.copy(self)
        object.__setattr__(clone, "_pending_events", [])
        return clone

    def spec(self) -> JobSpec:
        """What was asked for, as the router sees it (the window is absolute by now)."""
        return JobSpec(
            job_type=self.job_type,
            repository=self.repository,
            since=self.since,
            until=self.until,
            pr_numbers=tuple(self.pr_numbers),
            max_items=self.max_items,
            trigger=self.trigger,
            priority=self.priority,
            dedupe_key=self.dedupe_key,
            parent_id=self.parent_id,
            params=dict(self.params),
        )

    def _guard(self, action: str) -> None:
        if self.status not in ALLOWED[action]:
            raise InvalidTransition(self.id, self.status.value, action)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def last_event_at(self) -> datetime:
        return self.modified_on

    # Events and the commands that trigger them, in lifecycle order.

    class Routed(Aggregate.Event):
        lane: str
        rule: str
        reason: str
        fallback_from: str | None
        priority: str | None = None  # set when a fallback raises the job's priority

        def apply(self, job: Job) -> None:
            job.status, job.lane, job.rule, job.reason = S.ROUTED, self.lane, self.rule, self.reason
            job.ref, job.lane_failures = None, 0
            if self.priority:
                job.priority = self.priority

    def route(
        self,
        lane: str,
        rule: str,
        reason: str,
        now: datetime,
        fallback_from: str | None = None,
        priority: str | None = None,
    ) -> None:
        self._guard("route")
        self.trigger_event(
            self.Routed,
            lane=lane,
            rule=rule,
            reason=reason,
            fallback_from=fallback_from,
            priority=priority,
            timestamp=now,
        )

    class Dispatched(Aggregate.Event):
        lane: str
        ref: str
        attempt: int

        def apply(self, job: Job) -> None:
            job.status, job.ref = S.DISPATCHED, self.ref
            job.dispatches += 1

    def dispatch(self, ref: str, now: datetime) -> None:
        self._guard("dispatch")
        assert self.lane is not None
        self.trigger_event(
            self.Dispatched, lane=self.lane, ref=ref, attempt=self.attempt, timestamp=now
        )

    class DispatchFailed(Aggregate.Event):
        lane: str
        error: str

        def apply(self, job: Job) -> None:
            job.status, job.error = S.ROUTED, self.error
            job.lane_failures += 1

    def dispatch_failed(self, error: str, now: datetime) -> None:
        self._guard("record a failed dispatch")
        assert self.lane is not None
        self.trigger_event(self.DispatchFailed, lane=self.lane, error=error, timestamp=now)

    class Started(Aggregate.Event):
        worker: str
        lane: str
        attempt: int

        def apply(self, job: Job) -> None:
            job.status, job.worker, job.lane = S.RUNNING, self.worker, self.lane

    def start(self, worker: str, now: datetime, lane: str | None = None) -> None:
        self._guard("claim")
        lane = lane or self.lane or "local"
        self.trigger_event(
            self.Started, worker=worker, lane=lane, attempt=self.attempt, timestamp=now
        )

    class Progressed(Aggregate.Event):
        done: int
        total: int | None
        cursor: str | None
        api_points: int
        note: str

        def apply(self, job: Job) -> None:
            job.done, job.total = self.done, self.total
            if self.cursor is not None:
                job.cursor = self.cursor
            job.api_points += self.api_points

    def progress(
        self,
        now: datetime,
        done: int,
        total: int | None = None,
        cursor: str | None = None,
        api_points: int = 0,
        note: str = "",
    ) -> None:
        self._guard("progress")
        self.trigger_event(
            self.Progressed,
            done=done,
            total=total,
            cursor=cursor,
            api_points=api_points,
            note=note,
            timestamp=now,
        )

    class Failed(Aggregate.Event):
        error_type: str
        message: str
        retryable: bool
        attempt: int

        def apply(self, job: Job) -> None:
            job.status, job.error = S.FAILED, f"{self.error_type}: {self.message}"
            job.failures += 1

    class RetryScheduled(Aggregate.Event):
        attempt: int
        not_before: datetime
        cursor: str | None

        def apply(self, job: Job) -> None:
            job.status, job.attempt, job.not_before = (
                S.RETRY_SCHEDULED,
                self.attempt,
                self.not_before,
            )
            job.cursor, job.worker, job.dispatches = self.cursor, None, 0

    def fail(
        self,
        error_type: str,
        message: str,
        now: datetime,
        policy: RetryPolicy,
        retryable: bool = True,
        rng: random.Random | None = None,
    ) -> bool:
        """Records the failure; schedules another attempt while the policy allows.

        Returns True if a retry was scheduled, False if the failure is final.
        """
        self._guard("fail")
        self.trigger_event(
            self.Failed,
            error_type=error_type,
            message=message[:2000],
            retryable=retryable,
            attempt=self.attempt,
            timestamp=now,
        )
        if not retryable or self.failures >= policy.max_attempts:
            return False
        delay = retry_delay(self.failures, policy, rng)
        self._schedule(now + timedelta(seconds=delay), now)
        return True

    def replay(self, now: datetime) -> None:
        """One more attempt of a job that failed for good (after an incident is fixed): a
        retry due now, from its last cursor. The same job, never a new one."""
        self._guard("replay")
        self._schedule(now, now)

    def reschedule(self, not_before: datetime, now: datetime) -> None:
        """Ends this attempt without a failure (for example at a rate-limit reset)."""
        self._guard("reschedule")
        self._schedule(not_before, now)

    def _schedule(self, not_before: datetime, now: datetime) -> None:
        self.trigger_event(
            self.RetryScheduled,
            attempt=self.attempt + 1,
            not_before=not_before,
            cursor=self.cursor,
            timestamp=now,
        )

    class Completed(Aggregate.Event):
        items: int
        api_points: int
        summary: dict[str, Any]

        def apply(self, job: Job) -> None:
            job.status, job.items, job.error = S.COMPLETED, self.items, None
            job.api_points += self.api_points

    def complete(
        self, now: datetime, items: int, api_points: int = 0, summary: dict | None = None
    ) -> None:
        self._guard("complete")
        self.trigger_event(
            self.Completed,
            items=items,
            api_points=api_points,
            summary=summary or {},
            timestamp=now,
        )

    class Cancelled(Aggregate.Event):
        reason: str

        def apply(self, job: Job) -> None:
            job.status = S.CANCELLED

    def cancel(self, reason: str, now: datetime) -> None:
        self._guard("cancel")
        self.trigger_event(self.Cancelled, reason=reason, timestamp=now)


class DedupeSlot(Aggregate):
    """Holds the job that currently owns a dedupe key; its id derives from the key.

    Two enqueues of one key both write the slot's next version; the event table's primary
    key lets one win, so at most one active job per key exists whatever the concurrency.
    """

    class Opened(Aggregate.Created):
        dedupe_key: str
        job_id: UUID

    def __init__(self, dedupe_key: str, job_id: UUID) -> None:
        self.dedupe_key = dedupe_key
        self.job_id = job_id

    @staticmethod
    def id_for(dedupe_key: str) -> UUID:
        return uuid5(DEDUPE_NAMESPACE, dedupe_key)

    @classmethod
    def open(cls, dedupe_key: str, job_id: UUID, now: datetime) -> DedupeSlot:
        return cls._create(
            cls.Opened,
            id=cls.id_for(dedupe_key),
            timestamp=now,
            dedupe_key=dedupe_key,
            job_id=job_id,
        )

    class Taken(Aggregate.Event):
        job_id: UUID

        def apply(self, slot: DedupeSlot) -> None:
            slot.job_id = self.job_id

    def take(self, job_id: UUID, now: datetime) -> None:
        self.trigger_event(self.Taken, job_id=job_id, timestamp=now)
