"""A lane worker: takes routed jobs as they arrive (LISTEN/NOTIFY) with a polling fallback.

The recorder NOTIFYs `jobstore_routed` with the lane in the same transaction that routes a
job, so a waiting worker wakes within milliseconds of the commit. If the LISTEN connection
dies the worker keeps polling every `poll` seconds and reconnects: it never stalls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from capture.attempt import Result
from jobstore import DatabaseUnavailable, Hint, Job, JobStore, Status, Wakeup

log = logging.getLogger(__name__)


def route_due_retries(store: JobStore, lane: str, now: datetime) -> int:
    """Routes this lane's retries whose time has come back to it (the local lane has no
    dispatcher; a worker watching it does this between jobs)."""
    routed = 0
    for job_id in store.due_retries(now):
        job = store.get(job_id)
        waiting = job.lane == lane and job.status is Status.RETRY_SCHEDULED
        if waiting and store.wake(job.id, f"retry: attempt {job.attempt}", now):
            routed += 1
    return routed


def work(
    store: JobStore,
    lane: str,
    worker: str,
    run: Callable[[Job], Result],
    *,
    now: Callable[[], datetime],
    wakeup: Wakeup | None = None,
    max_jobs: int | None = None,
    watch: bool = False,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    on_claim: Callable[[UUID], None] | None = None,
    ready: Callable[[], str | None] = lambda: None,
    say: Callable[[str], None] = log.warning,
) -> list[Result]:
    """Claims and runs jobs of `lane` one at a time; without `watch`, stops when none wait.

    Before claiming, `ready()` names a problem that would fail every job (GitHub refusing
    the credentials) or None; while there is one, and while the database is unavailable,
    the worker claims nothing, says so once, and tries again with backoff. Without
    `watch` it stops instead of waiting for credentials.
    """
    stop = stop or threading.Event()
    results: list[Result] = []
    hinted: list[Hint] = []
    trouble: Trouble = Trouble(say)
    if watch and wakeup is not None and wakeup.conn is None:
        wakeup.listen()  # a worker that stops when nothing waits needs no notifications
    while not stop.is_set() and (max_jobs is None or len(results) < max_jobs):
        problem = ready()
        if problem is not None:
            if not watch:
                say(f"not claiming: {problem}")
                break
            stop.wait(trouble.begin(problem))
            continue
        try:
            if hinted:  # named by the notification: claim it directly (another may win it)
                hint = hinted.pop(0)
                claim = store.claim_notified(
                    hint.job_id, hint.version, hint.attempt, worker, lane, now()
                )
                trouble.end()
                if claim.won:
                    if on_claim is not None:
                        on_claim(claim.job_id)
                    results.append(run(claim.job or store.get(claim.job_id)))
                continue
            claimed = store.claim_next(lane, worker, now(), limit=1)
            trouble.end()
            if claimed:
                if on_claim is not None:
                    on_claim(claimed[0].id)
                results.append(run(claimed[0]))
                continue
            if route_due_retries(store, lane, now()):
                continue
        except DatabaseUnavailable as exc:
            hinted = []
            if wakeup is not None:
                wakeup.close()  # LISTEN again once the database is back
            stop.wait(trouble.begin(str(exc)))
            continue
        if not watch:
            break
        if wakeup is not None:
            hinted = wakeup.wait(poll) or []
        else:
            stop.wait(poll)
    return results


class Trouble:
    """A condition the worker waits out: said once when it starts and once when it ends,
    with capped exponential backoff in between."""

    def __init__(self, say: Callable[[str], None], cap: float = 30.0) -> None:
        self.say = say
        self.cap = cap
        self.since: float | None = None
        self.tries = 0

    def begin(self, problem: str) -> float:
        """Seconds to wait before trying again."""
        if self.since is None:
            self.since = time.monotonic()
            self.say(f"{problem}; waiting, and trying again with backoff")
        self.tries += 1
        return min(self.cap, 0.5 * 2 ** (self.tries - 1))

    def end(self) -> None:
        if self.since is not None:
            self.say(f"back after {time.monotonic() - self.since:.0f}s; carrying on")
            self.since, self.tries = None, 0
