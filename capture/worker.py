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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from uuid import UUID

from capture.attempt import Interrupted, Result, release
from jobstore import DatabaseUnavailable, Hint, Job, JobStore, JobUnreadable, Status, Wakeup

log = logging.getLogger(__name__)


def route_due_retries(store: JobStore, lane: str, now: datetime) -> int:
    """Routes this lane's retries whose time has come back to it (the local lane has no
    dispatcher; a worker watching it does this between jobs)."""
    routed = 0
    for job_id in store.due_retries(now):
        try:
            job = store.get(job_id)
        except JobUnreadable as exc:  # set aside: the other retries go on
            store.quarantine(job_id, "worker", exc.error, now)
            continue
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
    concurrency: int = 1,
) -> list[Result]:
    """Claims and runs jobs of `lane`, up to `concurrency` at once (1: one at a time, in
    this thread); without `watch`, stops when none wait and none are running.

    Before claiming, `ready()` names a problem that would fail every job (GitHub refusing
    the credentials) or None; while there is one, and while the database is unavailable,
    the worker claims nothing, says so once, and tries again with backoff. Without
    `watch` it stops instead of waiting for credentials. Asked to stop (`stop`), it
    claims nothing more and finishes the jobs in hand; interrupted (a second signal
    raising Interrupted in this thread), it releases the ones running on other threads.
    """
    stop = stop or threading.Event()
    slots = Slots(concurrency, run)
    hinted: list[Hint] = []
    trouble: Trouble = Trouble(say)

    def start(job: Job) -> None:
        if on_claim is not None:
            on_claim(job.id)
        slots.start(job)

    if watch and wakeup is not None and wakeup.conn is None:
        wakeup.listen()  # a worker that stops when nothing waits needs no notifications
    try:
        while not stop.is_set() and (max_jobs is None or slots.claimed < max_jobs):
            try:
                slots.settle(block=slots.full())  # a thread free before claiming for it
                problem = ready()
                if problem is not None:
                    if not watch:
                        say(f"not claiming: {problem}")
                        break
                    stop.wait(trouble.begin(problem))
                    continue
                if hinted:  # named by the notification: claim it directly (another may win)
                    hint = hinted.pop(0)
                    claim = store.claim_notified(
                        hint.job_id, hint.version, hint.attempt, worker, lane, now()
                    )
                    trouble.end()
                    if claim.won:
                        start(claim.job or store.get(claim.job_id))
                    continue
                claimed = store.claim_next(lane, worker, now(), limit=1)
                trouble.end()
                if claimed:
                    start(claimed[0])
                    continue
                if route_due_retries(store, lane, now()):
                    continue
            except DatabaseUnavailable as exc:
                hinted = []
                if wakeup is not None:
                    wakeup.close()  # LISTEN again once the database is back
                stop.wait(trouble.begin(str(exc)))
                continue
            if slots.running and not watch:  # what they end may make more (a parent's turn)
                slots.settle(block=True)
                continue
            if not watch:
                break
            if wakeup is not None:
                hinted = wakeup.wait(poll) or []
            else:
                stop.wait(poll)
        slots.drain()
    except Interrupted as exc:  # the attempts running on other threads are released too
        for job in slots.in_hand():
            release(store, job, exc.signum, now)
        raise
    finally:
        slots.close()
    return slots.results


class Slots:
    """The jobs in hand: run in the claiming thread (`size` 1) or on up to `size` threads
    of their own, their results in the order they ended."""

    def __init__(self, size: int, run: Callable[[Job], Result]) -> None:
        self.size = size
        self.run = run
        self.pool = ThreadPoolExecutor(size, thread_name_prefix="job") if size > 1 else None
        self.running: dict[Future, Job] = {}
        self.results: list[Result] = []

    @property
    def claimed(self) -> int:
        return len(self.results) + len(self.running)

    def full(self) -> bool:
        return len(self.running) >= self.size

    def start(self, job: Job) -> None:
        if self.pool is None:
            self.results.append(self.run(job))
        else:
            self.running[self.pool.submit(self.run, job)] = job

    def settle(self, block: bool = False) -> None:
        """Takes the results of the jobs that ended (waiting for one if `block`); an error
        a job's thread raised (the database gone while it ended) is raised here, after
        every ended job's result is taken."""
        if not self.running:
            return
        ended, _ = wait(list(self.running), None if block else 0, FIRST_COMPLETED)
        error: BaseException | None = None
        for future in ended:
            job = self.running.pop(future)
            try:
                self.results.append(future.result())
            except Exception as exc:  # said, and raised once every ended job is taken
                log.warning("job %s: its thread ended with %s", job.id, exc)
                error = error or exc
        if error is not None:
            raise error

    def drain(self) -> None:
        """Waits for every job in hand to end."""
        while self.running:
            try:
                self.settle(block=True)
            except DatabaseUnavailable:  # said; the sweeper finds the attempt stale
                continue

    def in_hand(self) -> list[Job]:
        return list(self.running.values())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


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
