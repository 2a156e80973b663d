"""Runs one job attempt, the code every lane runs: claim, handler, then exactly one ending
event written by the worker.

Errors are classified as the design asks: a rate limit reschedules at the reset (not a
failure); 404/410/451 and refused tokens fail for good; 5xx and network errors are retried
by the job store's policy; a job whose items all failed ends failed, never completed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import httpx

from capture.errors import CaptureError, RateLimited
from capture.github.client import GitHubFactory
from capture.github.ledger import PostgresBudgets
from capture.handlers import HANDLERS, Context, Progress
from capture.settings import CaptureSettings
from capture.storage import Storage
from jobstore import (
    ConfigError,
    DatabaseRefused,
    DatabaseUnavailable,
    InvalidTransition,
    Job,
    JobStore,
    Patient,
    Route,
    Status,
)

log = logging.getLogger(__name__)


class Interrupted(BaseException):
    """The process was asked to stop (SIGINT, SIGTERM) while running an attempt: the
    attempt is released at once, to be retried from its last checkpoint. A BaseException,
    like KeyboardInterrupt, so that no handler mistakes it for its own failure."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@dataclass(frozen=True)
class Result:
    """How the attempt ended: completed, failed, rescheduled, waiting, or lost (not claimed)."""

    job_id: UUID
    outcome: str
    detail: str = ""
    items: int = 0
    points: int = 0


def error_type(exc: BaseException) -> str:
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def run_job(
    store: JobStore,
    job_id: UUID | str,
    *,
    worker: str,
    storage: Storage,
    settings: CaptureSettings,
    github: GitHubFactory,
    lane: str | None = None,
    attempt: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Progress | None = None,
) -> Result:
    """Claims the job's current attempt and runs it to one ending event. A job waiting for
    another lane is routed to `lane` first, so the log says where it ran and why."""
    waiting = store.get(job_id)
    if lane is not None and waiting.lane != lane and waiting.status is Status.ROUTED:
        reason = f"run on {lane} by hand (it was routed to {waiting.lane})"
        store.route(waiting.id, Route(lane, "explicit", reason), now())
    claim = store.claim(job_id, worker, now(), attempt=attempt, lane=lane)
    if not claim.won:
        return Result(claim.job_id, "lost", claim.reason)
    return run_claimed(
        store,
        claim.job or store.get(claim.job_id),
        storage=storage,
        settings=settings,
        github=github,
        now=now,
        progress=progress,
    )


def run_claimed(
    store: JobStore,
    job: Job,
    *,
    storage: Storage,
    settings: CaptureSettings,
    github: GitHubFactory,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Progress | None = None,
) -> Result:
    """Runs a job whose attempt this worker has claimed (it is running) to one ending event.

    If someone else ended the attempt meanwhile (cancelled, or swept as stale while this
    worker was still going) the worker's next write is refused; it stops and reports the
    attempt lost, writing nothing more. Rows already stored are upserts: a later attempt
    rewrites them, never doubles them.
    """
    store = Patient(store)  # type: ignore[assignment] # a short outage delays, never fails
    try:
        return _run_claimed(store, job, storage, settings, github, now, progress)
    except InvalidTransition as exc:
        log.warning("job %s: attempt %s ended elsewhere (%s)", job.id, job.attempt, exc)
        return Result(job.id, "lost", f"attempt ended elsewhere: {exc}")
    except Interrupted as exc:  # released at once: the next attempt resumes from the cursor
        return release(store, job, exc.signum, now)


def release(
    store: JobStore, job: Job, signum: int, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Result:
    """The attempt in hand recorded as interrupted, to be retried from its last checkpoint
    (nothing, if it had ended just before the signal)."""
    message = f"interrupted by {signal.Signals(signum).name}; retried from its last checkpoint"
    with contextlib.suppress(InvalidTransition):
        ended = store.fail(
            job.id, "interrupted", message, retryable=True, attempt=job.attempt, now=now()
        )
        store.wake_parent(ended, now())
    return Result(job.id, "interrupted", message)


def _run_claimed(
    store: JobStore,
    job: Job,
    storage: Storage,
    settings: CaptureSettings,
    github: GitHubFactory,
    now: Callable[[], datetime],
    progress: Progress | None,
) -> Result:

    ctx: Context | None = None

    def held() -> Job:
        """The job as this worker last wrote it (its checkpoints move it on)."""
        return ctx.job if ctx is not None else job

    def failed(kind: str, message: str, retryable: bool = True, points: int = 0) -> Result:
        ended = store.fail(
            job.id,
            kind,
            message,
            retryable=retryable,
            attempt=job.attempt,
            now=now(),
            held=held(),
        )
        store.wake_parent(ended, now())
        return Result(job.id, "failed", message, points=points)

    entry = HANDLERS.get(job.job_type)
    if entry is None:
        return failed("unknown_job_type", f"no handler for {job.job_type!r}", retryable=False)
    try:
        gh = github.github(
            realtime=job.lane == "inngest" or job.trigger == "manual",
            repository=job.repository,  # its own installation first
            etags=storage.etag_cache(),  # REST answers' ETags outlive the job
            on_wait=lambda left, why: ctx and ctx.heartbeat(f"waiting {left:.0f}s: {why}"),
        )
    except ConfigError as exc:
        return failed("config_error", str(exc), retryable=False)
    except CaptureError as exc:  # the App could not look up or mint: retried, said once
        return failed(error_type(exc), str(exc), exc.retryable)
    ctx = Context(store, job, gh, storage, settings, now, progress=progress)
    try:
        outcome = entry.run(ctx)
    except RateLimited as exc:
        ctx.checkpoint(ctx.job.done, None, None, note=str(exc))
        store.reschedule(job.id, exc.reset_at, attempt=job.attempt, now=now(), held=ctx.job)
        return Result(job.id, "rescheduled", str(exc), points=gh.meter.points)
    except CaptureError as exc:
        return failed(error_type(exc), str(exc), exc.retryable, gh.meter.points)
    except ConfigError as exc:
        return failed("config_error", str(exc), retryable=False, points=gh.meter.points)
    except DatabaseUnavailable as exc:  # the budget ledger or storage: retried later
        return failed("database_unavailable", str(exc), points=gh.meter.points)
    except DatabaseRefused as exc:  # a row the database would not take: said, retried
        return failed("database_refused", str(exc), points=gh.meter.points)
    except InvalidTransition:
        raise  # the attempt was ended elsewhere: not a crash of this handler
    except Exception as exc:  # a bug in a handler must still end the attempt, with its name
        log.exception("job %s crashed", job.id)
        return failed("internal", f"{type(exc).__name__}: {exc}", points=gh.meter.points)
    finally:
        gh.close()
    points = gh.meter.points - ctx.points_reported
    if outcome.wait_until is not None and outcome.children:
        store.wait_for_children(
            job.id, outcome.wait_until, attempt=job.attempt, now=now(), held=ctx.job
        )
        return Result(job.id, "waiting", "waiting for child jobs", points=gh.meter.points)
    if outcome.wait_until is not None:
        store.reschedule(job.id, outcome.wait_until, attempt=job.attempt, now=now(), held=ctx.job)
        until = outcome.wait_until.isoformat()
        return Result(job.id, "waiting", f"waiting until {until}", points=gh.meter.points)
    if outcome.items == 0 and outcome.failed_items > 0:
        message = f"all {outcome.failed_items} items failed"
        return failed("items_failed", message, retryable=False, points=gh.meter.points)
    expected = ctx.job.total or 0
    if outcome.items == 0 and expected > 0:  # never "completed, 0 of 500"
        message = f"none of the {expected} items it listed were captured"
        return failed("items_missing", message, retryable=False, points=gh.meter.points)
    summary = {
        **outcome.summary,
        "graphql_points": gh.meter.graphql_points,
        "rest_requests": gh.meter.rest_points,
        "fallbacks": len(gh.meter.fallbacks),
        "graphql_queries": gh.meter.by_operation(),
        "node_counting": gh.graphql.counting.mode,
    }
    ended = store.complete(
        job.id,
        outcome.items,
        api_points=points,
        summary=summary,
        attempt=job.attempt,
        now=now(),
        held=ctx.job,
    )
    store.wake_parent(ended, now())
    return Result(job.id, "completed", items=outcome.items, points=gh.meter.points)


class Runner:
    """What a process needs to run attempts, made once and reused by every job: the
    capture storage and the budget ledger on the job store's connections, and one GitHub
    factory (one HTTP client). What an Actions step, the Inngest function and a lane
    worker run."""

    def __init__(
        self,
        store: JobStore,
        settings: CaptureSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.settings = settings
        self.now = now
        self.storage = Storage(store.database("storage"))
        self.budgets = PostgresBudgets(store.database("budgets"))
        self.github = GitHubFactory(settings, self.budgets, transport=transport, now=now)

    def run(
        self,
        job_id: UUID | str,
        *,
        worker: str,
        lane: str | None = None,
        attempt: int | None = None,
        progress: Progress | None = None,
    ) -> Result:
        """Claims and runs one job's attempt (an Actions step, the Inngest function)."""
        return run_job(
            self.store,
            job_id,
            worker=worker,
            lane=lane,
            attempt=attempt,
            storage=self.storage,
            settings=self.settings,
            github=self.github,
            now=self.now,
            progress=progress,
        )

    def run_claimed(self, job: Job, progress: Progress | None = None) -> Result:
        """Runs a job this worker claimed (what a lane worker calls)."""
        return run_claimed(
            self.store,
            job,
            storage=self.storage,
            settings=self.settings,
            github=self.github,
            now=self.now,
            progress=progress,
        )

    def close(self) -> None:
        """Gives back unspent budget leases and closes the HTTP client."""
        try:
            self.budgets.flush()
        except DatabaseUnavailable:  # they expire on their own (RESERVATION)
            log.warning("could not give back budget leases; they expire on their own")
        finally:
            self.github.close()
