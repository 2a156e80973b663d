"""What a job type's handler works with and returns: its context, progress and outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from capture.errors import QueryFailed
from capture.github.client import GitHub
from capture.settings import CaptureSettings
from capture.storage import Storage
from jobstore import Job, JobStore

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a handler's attempt ended: done (items), or waiting until `wait_until` (for its
    child jobs with `children`: woken sooner when the last one ends)."""

    items: int = 0
    failed_items: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    wait_until: datetime | None = None
    children: bool = False


Progress = Callable[[int, int | None], None]


@dataclass
class Context:
    """What a handler works with; `checkpoint` records progress and where to resume."""

    store: JobStore
    job: Job
    gh: GitHub
    storage: Storage
    settings: CaptureSettings
    now: Callable[[], datetime]
    points_reported: int = 0
    progress: Progress | None = None  # told (done, total) at every checkpoint, e.g. a bar
    last: tuple[int, int | None, str | None] | None = None  # the last checkpoint's position

    def __post_init__(self) -> None:
        self._resume = self.job.cursor

    def start_over(self) -> None:
        """This attempt resumes from nothing (a handler that fetches its few items anew)."""
        self._resume = None

    @property
    def cursor(self) -> str | None:
        """Where this attempt started: the last checkpoint of the attempts before it."""
        return self._resume

    def checkpoint(
        self,
        done: int,
        total: int | None,
        cursor: str | None,
        note: str = "",
        recorded: bool = True,
    ) -> None:
        """Records progress and where a later attempt resumes; not `recorded` (the work's
        last step, which the ending event follows at once), only shown."""
        if not recorded:
            if self.progress is not None:
                self.progress(done, total)
            self.last = (done, total, cursor)
            return
        points = self.gh.meter.points - self.points_reported
        self.job = self.store.progress(
            self.job.id,
            done,
            total=total,
            cursor=cursor,
            api_points=points,
            note=note,
            attempt=self.job.attempt,
            now=self.now(),
            held=self.job,
        )
        self.points_reported += points
        if self.progress is not None:
            self.progress(done, total)
        self.last = (done, total, cursor)

    def heartbeat(self, note: str) -> None:
        """A Progressed event with nothing new but the time: the attempt is alive."""
        done, total, cursor = self.last or (self.job.done, self.job.total, self.job.cursor)
        self.job = self.store.progress(
            self.job.id,
            done,
            total=total,
            cursor=cursor,
            note=note[:200],
            attempt=self.job.attempt,
            now=self.now(),
            held=self.job,
        )


@dataclass(frozen=True)
class Handler:
    name: str
    run: Callable[[Context], Outcome]
    lanes: tuple[str, ...]


def with_rest_fallback(ctx: Context, work: Callable[[Context], Outcome]) -> Outcome:
    """Runs `work` through GraphQL; if GraphQL cannot serve it at all (not a shape
    problem: those are shrunk), counts, logs and reruns it through REST (idempotent: rows
    are upserted), capped at `rest_factor` times what GraphQL had spent, or `rest_floor`
    requests; past the cap the job pauses (FallbackCapped) rather than burn the token."""
    try:
        return work(ctx)
    except QueryFailed as exc:
        if ctx.settings.force_rest:
            raise
        ctx.gh.meter.fallbacks.append(f"job through REST: {exc}")
        log.warning("GraphQL cannot serve job %s (%s); using REST", ctx.job.id, exc)
        spent = ctx.gh.meter.graphql_points
        cap = max(ctx.settings.rest_floor, ctx.settings.rest_factor * spent)
        ctx.gh.rest.limit(
            ctx.gh.meter.rest_points + cap,
            f"the whole job through REST after: {exc}"[:200],
        )
        ctx.settings = replace(ctx.settings, force_rest=True)
        return work(ctx)
