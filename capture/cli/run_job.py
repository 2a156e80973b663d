"""`bin/run-job`: runs one job (`--job-id`) or works a lane's queue (`--lane`), the same
code every lane runs: an Actions step, the Inngest function, or a local worker."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import click

from capture.attempt import Interrupted, Result
from capture.cli.actions import ActionsReport
from capture.cli.common import (
    Command,
    Resources,
    capture_settings,
    errors,
    resources,
    version_option,
)
from capture.cli.logs import log_options
from capture.github.client import CredentialCheck, credential_problem
from capture.settings import CaptureSettings
from capture.worker import work
from jobstore import LANES, DatabaseUnavailable, Job, JobStore, Wakeup, plan_matrix

EXIT = {"completed": 0, "rescheduled": 0, "waiting": 0, "lost": 0, "failed": 1}
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_signals(first: Callable[[int], None]) -> None:
    """`first(signum)` on the first SIGINT/SIGTERM; a second one aborts at once
    (128 + its number, as a shell reports it)."""

    def again(signum: int, _frame: object) -> None:
        os._exit(128 + signum)

    def once(signum: int, _frame: object) -> None:
        for s in SIGNALS:
            signal.signal(s, again)
        first(signum)

    for s in SIGNALS:
        signal.signal(s, once)


def closing() -> None:
    """Once the work is done, a signal while the script closes (catching up the views)
    just ends it: nothing is in hand, and the views catch up with the next script."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for s in SIGNALS:
        signal.signal(s, leave)


def release(signum: int) -> None:
    """Stops the attempt in hand: it is recorded as interrupted and retried."""
    name = signal.Signals(signum).name
    click.echo(f"{name}: releasing the attempt at its last checkpoint (again to abort)", err=True)
    raise Interrupted(signum)


def exit_code(result: Result) -> int:
    if result.outcome == "interrupted":
        return 128 + signal.Signals[result.detail.removeprefix("interrupted by ").split(";")[0]]
    return EXIT[result.outcome]


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(UTC)


def run_one(
    ctx: click.Context,
    job_id: str,
    worker: str,
    lane: str | None,
    attempt: int | None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Result:
    """Runs one job with the environment's GitHub settings; shared by the lane consumers."""
    s = resources(ctx)
    settings = capture_settings()  # bad settings are bad input: exit 2 before any read
    with errors():
        store = s.store
        job_id = str(store.get(store.resolve(job_id)).id)  # unknown: exit 2, nothing written
        refuse_without_credentials(settings, job_id)
        return s.runner().run(job_id, worker=worker, lane=lane, attempt=attempt, progress=progress)


def refuse_without_credentials(settings: CaptureSettings, job_id: str) -> None:
    """Claims nothing when every job would fail: no token is bad input (exit 2); a token
    GitHub refuses leaves the job as it is (exit 1), to run once the token is fixed."""
    problem = credential_problem(settings)
    if problem is None:
        return
    if not settings.has_credentials:
        raise click.UsageError(problem)
    raise click.ClickException(f"job {job_id} not claimed: {problem}")


class Bar:
    """A progress bar on a terminal (click's), nothing elsewhere (nor while several jobs
    run at once: their lines say how each ended); one per job."""

    def __init__(self, label: str, shown: bool = True) -> None:
        self.label = label
        self.bar = None
        self.shown = 0
        self.enabled = shown and sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(
                length=max(total or done, 1), label=self.label, file=sys.stderr
            )
            self.bar.__enter__()
        if total:
            self.bar.length = max(total, done, 1)
        self.bar.update(max(done - self.shown, 0))
        self.shown = max(done, self.shown)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def report(result: Result, job: Job | None, started: datetime, actions: ActionsReport) -> None:
    """One line per job; in GitHub Actions also outputs, a summary row and an annotation."""
    line = f"job {result.job_id}: {result.outcome}"
    if result.detail:
        line += f" ({result.detail})"
    if result.outcome == "completed":
        line += f", {result.items} items, {result.points} points"
    click.echo(line, err=result.outcome == "failed")
    if not actions.active or job is None:
        return
    seconds = round((now() - started).total_seconds(), 1)
    actions.summary(
        f"Capture job {job.job_type} {job.repository}",
        ["job", "lane", "attempt", "outcome", "items", "points", "duration (s)"],
        [[job.id, job.lane, job.attempt, result.outcome, result.items, result.points, seconds]],
    )
    if result.outcome == "failed":
        actions.error(f"job {job.id} failed: {result.detail}", f"capture {job.job_type}")


@click.command(cls=Command)
@version_option
@log_options
@click.option("--job-id", help="Run this job (its current attempt); a unique prefix will do.")
@click.option("--attempt", type=click.IntRange(1), help="Run only if the job is on this attempt.")
@click.option(
    "--lane",
    type=click.Choice(LANES),
    help="The lane this worker belongs to; without --job-id, work that lane's queue.",
)
@click.option("--max-jobs", type=click.IntRange(1), help="With --lane: stop after N jobs.")
@click.option("--watch", is_flag=True, help="With --lane: wait for new jobs (LISTEN/NOTIFY).")
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 300),
    help="With --watch: look for work at least this often (seconds), even without a NOTIFY.",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    envvar="CAPTURE_WORKER_CONCURRENCY",
    type=click.IntRange(1, 64),
    help="With --lane: jobs run at once, on threads sharing the process's connections "
    "(GitHub requests in flight stay within CAPTURE_CONCURRENCY per credential).",
)
@click.option("--worker-id", default=default_worker, show_default="host:pid")
def run_job_command(
    job_id: str | None,
    attempt: int | None,
    lane: str | None,
    max_jobs: int | None,
    watch: bool,
    poll: float,
    concurrency: int,
    worker_id: str,
) -> None:
    """Claim and run jobs; exit 0 done or rescheduled, 1 a job failed, 2 bad input.

    \b
    bin/run-job --job-id ID [--attempt N] [--lane LANE]   one job (Actions, Inngest)
    bin/run-job --lane local [--max-jobs N] [--watch] [--concurrency N]
                                                          a worker on a lane's queue
    """
    ctx = click.get_current_context()
    if job_id is None and lane is None:
        raise click.UsageError("give --job-id ID, or --lane LANE to work a lane's queue")
    given = ctx.get_parameter_source("concurrency") is click.core.ParameterSource.COMMANDLINE
    if job_id is not None and (max_jobs is not None or watch or given):
        raise click.UsageError(
            "--max-jobs, --watch and --concurrency work a lane's queue: use them without --job-id"
        )
    actions = ActionsReport()
    if job_id is not None:
        started = now()
        bar = Bar(f"job {job_id[:8]}")
        on_signals(release)
        try:
            result = run_one(ctx, job_id, worker_id, lane, attempt, bar)
        except Interrupted as exc:  # before the claim or after the ending event
            raise SystemExit(128 + exc.signum) from None
        finally:
            closing()
            bar.close()

        job = resources(ctx).store.get(result.job_id)
        report(result, job, started, actions)
        riders = run_riders(ctx, job, attempt or job.attempt, worker_id, lane, actions)
        actions.outputs(
            {
                "job_id": str(job.id),
                "outcome": result.outcome,
                "items": result.items,
                "points": result.points,
                "children": [str(c) for c in plan_children(resources(ctx), job, actions)],
                "batch": len(riders),
            }
        )
        stopped = [r for r in riders if r.outcome in ("interrupted", "failed")]
        raise SystemExit(exit_code(stopped[-1] if stopped else result))
    assert lane is not None
    try:
        results = work_lane(ctx, lane, worker_id, max_jobs, watch, poll, actions, concurrency)
    except Interrupted as exc:  # the jobs in hand (if any) were released
        closing()
        if concurrency > 1:  # their threads may still be busy: they are not waited for
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + exc.signum)
        raise SystemExit(128 + exc.signum) from None
    closing()
    failed = sum(r.outcome == "failed" for r in results)
    click.echo(f"worker {worker_id}: {len(results)} jobs, {failed} failed")
    actions.outputs({"jobs": len(results), "failed": failed})
    interrupted = [r for r in results if r.outcome == "interrupted"]
    raise SystemExit(exit_code(interrupted[-1]) if interrupted else 1 if failed else 0)


def run_riders(
    ctx: click.Context,
    leader: Job,
    attempt: int,
    worker: str,
    lane: str | None,
    actions: ActionsReport,
) -> list[Result]:
    """The jobs that ride this run (a batch of small refreshes the dispatcher sent with
    its leader: jobstore's lane_batches), one after another, each its own job."""
    results = []
    for member, member_attempt in resources(ctx).store.heads.batch_members(leader.id, attempt):
        started = now()
        bar = Bar(f"job {str(member)[:8]} (batch of {str(leader.id)[:8]})")
        on_signals(release)
        try:
            result = run_one(
                ctx, str(member), f"{worker} (batch of {leader.id})", lane, member_attempt, bar
            )
        except Interrupted as exc:  # the attempt in hand was released; the rest time out
            raise SystemExit(128 + exc.signum) from None
        finally:
            closing()
            bar.close()
        report(result, resources(ctx).store.get(member), started, actions)
        results.append(result)
        if result.outcome == "interrupted":  # a signal stops the run: the rest time out
            break
    return results


def plan_children(s: Resources, job: Job, actions: ActionsReport) -> list[UUID]:
    """In Actions: the child jobs this run's matrix runs (see plan_matrix)."""
    if not actions.active:
        return []
    return plan_matrix(s.store, job, actions.files.run_ref or f"matrix of {job.id}", now())


def work_lane(
    ctx: click.Context,
    lane: str,
    worker: str,
    max_jobs: int | None,
    watch: bool,
    poll: float,
    actions: ActionsReport,
    concurrency: int = 1,
) -> list[Result]:
    s = resources(ctx)
    settings = capture_settings()
    if not settings.has_credentials:
        raise click.UsageError(
            "GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set: "
            "no job could run"
        )
    stop = threading.Event()

    def finish(signum: int) -> None:
        name = signal.Signals(signum).name
        click.echo(
            f"{name}: finishing the job in hand, then stopping (again to release it)", err=True
        )
        stop.set()
        on_signals(release)  # a second signal releases the attempt, a third aborts

    on_signals(finish)
    with errors():
        store = s.store
        runner = s.runner()
        credentials = CredentialCheck(settings, runner.github.client)

        said = threading.Lock()  # one job's report at a time

        def run(job: Job) -> Result:
            started = now()
            bar = Bar(f"{job.job_type} {job.repository}", shown=concurrency == 1)
            try:
                result = runner.run_claimed(job, progress=bar)
            finally:
                bar.close()
            with said:
                report(result, job, started, actions)
            if "HTTP 401" in result.detail:
                credentials.forget()  # check again before the next claim
            return result

        wakeup = Wakeup(s.url or "", lane)
        try:
            return work(
                store,
                lane,
                worker,
                run,
                now=now,
                wakeup=wakeup,
                max_jobs=max_jobs,
                watch=watch,
                poll=poll,
                stop=stop,
                ready=lambda: lane_stopped(store, lane) or credentials(),
                say=lambda line: click.echo(f"worker {worker}: {line}", err=True),
                concurrency=concurrency,
            )
        finally:
            wakeup.close()


def lane_stopped(store: JobStore, lane: str) -> str | None:
    """An emergency stop on this worker's lane (bin/jobs rollout stop), as a problem."""
    try:
        why = store.lane_stop(lane)
    except DatabaseUnavailable:  # the claim meets the outage and waits it out
        return None
    return (
        None if why is None else f"lane {lane} is stopped ({why}); bin/jobs rollout resume {lane}"
    )
