"""`bin/jobs`: list, show, stats, watch, project, rebuild, cancel, sweep and webhooks."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import click
import httpx

from capture.cli import render
from capture.cli.actions import ActionsReport
from capture.cli.archive import archive, archived
from capture.cli.common import Group, IsoTime, echo_json, errors, resources, version_option
from capture.cli.logs import log_options
from capture.cli.rollout import rollout
from capture.cli.webhooks import webhooks
from capture.ops.oversee import oversee
from capture.settings import alert_webhook
from jobstore import (
    LANES,
    Database,
    DatabaseReadOnly,
    DatabaseUnavailable,
    InvalidTransition,
    Status,
    SweepReport,
    project_forever,
    reads,
    sweep,
)

LIST_COLUMNS = [
    "job_id",
    "job_type",
    "repository",
    "lane",
    "status",
    "attempt",
    "progress",
    "api_points",
    "created_at",
]


@click.group(cls=Group)
@version_option
@log_options
def jobs() -> None:
    """Read the job store: jobs, their history, lane statistics, and the projector."""


def current(ctx: click.Context) -> Database:
    """The database to read the views from, with the views caught up so they are current
    when read."""
    s = resources(ctx)
    with errors():
        try:
            s.catch_up()
        except DatabaseReadOnly:  # a replica: read the views as last projected
            click.echo("note: the database is read-only; views as last projected", err=True)
    return s.store.database("reads")


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only this status.")
@click.option("--lane", type=click.Choice(LANES), help="Only this lane.")
@click.option("--repo", help="Only this repository (owner/name).")
@click.option("--type", "job_type", help="Only this job type.")
@click.option("--since", type=IsoTime(), help="Only jobs created at or after this time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def list_jobs(
    ctx: click.Context,
    status: str | None,
    lane: str | None,
    repo: str | None,
    job_type: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    where = reads.JobFilter(status, lane, job_type, repo, since, limit)
    url = current(ctx)
    with errors():
        rows = reads.list_jobs(url, where)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        row["progress"] = f"{row['items_done']}/{row['items_total'] or '?'}"
    click.echo(render.table(rows, LIST_COLUMNS) if rows else "no jobs")


@jobs.command()
@click.argument("job_id")
@click.option("--at", type=IsoTime(), help="Show the state as it was at this time.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def show(ctx: click.Context, job_id: str, at: datetime | None, as_json: bool) -> None:
    """The whole event history of a job and its state (now, or --at a time).

    JOB_ID is a job's id or a unique prefix of it (as `bin/jobs list` prints them)."""
    with errors():
        store = resources(ctx).store
        document = reads.job_history(store, store.resolve(job_id), at)
    if as_json:
        echo_json(document)
    else:
        click.echo(render.render_history(document))


@jobs.command()
@click.option(
    "--window",
    type=click.Choice(list(reads.WINDOWS)),
    default="all",
    show_default=True,
    help="The last hour, day or week, or all time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def stats(ctx: click.Context, window: str, as_json: bool) -> None:
    """Per-lane and total counts, timings and cost over a window, with the saving against
    all-Inngest (from the rollups: as fast on day 365 as on day 1). Pending and
    processing are the jobs waiting and running now."""
    url = current(ctx)
    with errors():
        document = reads.lane_statistics(url, window)
    if as_json:
        echo_json(document)
    else:
        click.echo(render.render_stats(document))


@jobs.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def budget(ctx: click.Context, as_json: bool) -> None:
    """The API budget of every credential, shared by all workers: limit, what GitHub last
    said is left, what requests in flight hold, when it resets. Never a token."""
    s = resources(ctx)
    with errors():
        rows = s.budgets().snapshot(datetime.now(UTC))
    for row in rows:
        row["label"] = row["label"] or row["credential"]
        row["used"] = f"{1 - (row['remaining'] or 0) / row['limit']:.0%}" if row["limit"] else "-"
    if as_json:
        echo_json(rows)
        return
    columns = ["label", "resource", "limit", "remaining", "reserved", "used", "reset_at"]
    click.echo(render.table(rows, columns) if rows else "no budget observed yet")


@jobs.command()
@click.option("--breached", is_flag=True, help="Only repositories past their target.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def freshness(ctx: click.Context, breached: bool, as_json: bool) -> None:
    """Tracked repositories: how old their data is against their tier's target."""

    with errors():
        if as_json:  # built by PostgreSQL: a fleet's worth in a fraction of a second
            click.echo(resources(ctx).registry().freshness_json(breached_only=breached))
            return
        registry = resources(ctx).registry()
        rows = registry.freshness(breached_only=breached)
        progress = registry.bootstrap_progress()
    columns = ["repository", "effective_tier", "age", "target", "breached", "last_success"]
    columns += ["next_due", "bootstrap", "gone_at"]
    empty = "no repository is past its target" if breached else "no repositories tracked"
    if progress["tracked"] and progress["done"] < progress["tracked"]:
        click.echo(render.bootstrap_line(progress))
    click.echo(render.table(rows, columns) if rows else empty)


@jobs.command()
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def quarantined(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Jobs set aside because their events cannot be read (who found them, the error)."""
    with errors():
        rows = resources(ctx).store.quarantined(limit)
    if as_json:
        echo_json(rows)
        return
    columns = ["job_id", "job_type", "repository", "found_by", "error", "first_at", "seen"]
    click.echo(render.table(rows, columns) if rows else "no job is quarantined")


@jobs.command()
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60))
@click.option("--once", is_flag=True, help="Print the view once and exit.")
@click.pass_context
def watch(ctx: click.Context, interval: float, once: bool) -> None:
    """A live view of active jobs with progress bars (Ctrl-C to stop)."""
    while True:
        url = current(ctx)
        with errors():
            screen = render.render_active(reads.active_jobs(url))
        if once or not sys.stdout.isatty():
            click.echo(screen)
            return
        click.clear()
        click.echo(screen)
        time.sleep(interval)


@jobs.command()
@click.option("--forever", is_flag=True, help="Keep projecting new events until stopped.")
@click.option(
    "--poll",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds between catch-ups (the fallback when LISTEN drops).",
)
@click.pass_context
def project(ctx: click.Context, forever: bool, poll: float) -> None:
    """Bring the views up to date (once, or --forever)."""
    s = resources(ctx)
    with errors():
        click.echo(f"applied {s.catch_up()} events")
        if not forever:
            return
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        assert s.url is not None
        project_forever(s.url, stop, poll)


@jobs.command()
@click.pass_context
def rebuild(ctx: click.Context) -> None:
    """Rebuild every view from the event log (one transaction; readers see old or new)."""
    s = resources(ctx)
    with errors():
        count = s.views.rebuild(s.store)
    click.echo(f"rebuilt from {count} events")


def selection(command: Callable[..., None]) -> Callable[..., None]:
    """The options that pick jobs in bulk: the same filters as `list`, plus when they were
    created and what their last error says."""
    options = [
        click.argument("job_id", required=False),
        click.option("--status", type=click.Choice([s.value for s in Status])),
        click.option("--lane", type=click.Choice(LANES)),
        click.option("--repo", help="owner/name"),
        click.option("--type", "job_type"),
        click.option("--since", type=IsoTime(), help="Created at or after this time."),
        click.option("--until", type=IsoTime(), help="Created before this time."),
        click.option("--error", help="Their last error contains this text."),
        click.option("--dry-run", is_flag=True, help="Say which jobs, change nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def chosen(ctx: click.Context, job_id: str | None, where: reads.JobFilter) -> list[UUID]:
    """JOB_ID (a prefix will do), or every job the filters pick; refuses neither."""
    if job_id is not None and not where.is_empty:
        raise click.UsageError("give JOB_ID or filters, not both")
    s = resources(ctx)
    with errors():
        if job_id is not None:
            return [s.store.resolve(job_id)]
    if where.is_empty:
        raise click.UsageError("give JOB_ID, or at least one filter (--status, --lane, ...)")
    url = current(ctx)
    with errors():
        return [row["job_id"] for row in reads.list_jobs(url, replace(where, limit=1_000_000))]


def bulk(
    ctx: click.Context,
    verb: str,
    ids: list[UUID],
    act: Callable[[UUID], bool],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Applies `act` (True when it changed the job) to each job; says what changed."""
    changed, unchanged = [], []
    with errors():
        for job_id in ids:
            (changed if not dry_run and act(job_id) else unchanged).append(job_id)
    if as_json:
        echo_json({verb: changed, "unchanged": unchanged, "dry_run": dry_run})
        return
    if dry_run:
        click.echo(f"would look at {len(ids)} jobs (dry run: nothing written)")
        click.echo("\n".join(str(i) for i in ids))
        return
    click.echo(f"{verb} {len(changed)} jobs; {len(unchanged)} unchanged")


@jobs.command()
@selection
@click.pass_context
def retry(
    ctx: click.Context,
    job_id: str | None,
    status: str | None,
    lane: str | None,
    repo: str | None,
    job_type: str | None,
    since: datetime | None,
    until: datetime | None,
    error: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Give jobs that failed for good one more attempt, due now (a replay after an incident).

    The same jobs, not new ones, from their last checkpoint; a job another active job has
    replaced (same dedupe key) is left alone. A second run changes nothing."""
    if status not in (None, "failed"):
        raise click.BadParameter("only failed jobs can be retried", param_hint="'--status'")
    where = reads.JobFilter(status or "failed", lane, job_type, repo, since, 0, until, error)
    ids = chosen(ctx, job_id, where if job_id is None else reads.JobFilter())
    store = resources(ctx).store
    bulk(ctx, "retried", ids, lambda i: store.replay(i) is not None, dry_run, as_json)


@jobs.command()
@selection
@click.option("--reason", default="cancelled by an operator", show_default=True)
@click.pass_context
def cancel(
    ctx: click.Context,
    job_id: str | None,
    status: str | None,
    lane: str | None,
    repo: str | None,
    job_type: str | None,
    since: datetime | None,
    until: datetime | None,
    error: str | None,
    dry_run: bool,
    as_json: bool,
    reason: str,
) -> None:
    """Cancel a job, or every job the filters pick, that has not ended (a running worker
    stops at its next checkpoint). JOB_ID is a job's id or a unique prefix of it."""
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="'--reason'")
    where = reads.JobFilter(status, lane, job_type, repo, since, 0, until, error)
    ids = chosen(ctx, job_id, where)
    store = resources(ctx).store
    if job_id is not None:  # one job: say exactly why it cannot be cancelled
        with errors():
            job = store.cancel(ids[0], reason[:500])
        click.echo(f"job {job.id} cancelled ({reason})")
        return

    def cancel_one(one: UUID) -> bool:
        if store.get(one).is_final:
            return False
        try:
            store.cancel(one, reason[:500])
        except InvalidTransition:  # it ended meanwhile
            return False
        return True

    bulk(ctx, "cancelled", ids, cancel_one, dry_run, as_json)


def _lines(report: SweepReport) -> list[str]:
    lines = [
        f"stale jobs failed (retried from their cursor): {len(report.stale)}",
        f"due retries routed again: {len(report.retried)}",
        f"dispatched but never started (re-dispatched): {len(report.undelivered)}",
        f"dispatched: {sum(s.ok for s in report.sent)}",
    ]
    if report.waiting:
        lines.append(f"waiting for room on a full lane (routed, in turn): {report.waiting}")
    if report.quarantined:
        lines.append(f"set aside, unreadable (bin/jobs quarantined): {len(report.quarantined)}")
    for sent in report.sent:
        if sent.fallback_from:
            lines.append(f"  {sent.job_id}: {sent.fallback_from} -> {sent.lane}")
        if not sent.ok:
            lines.append(f"  {sent.job_id}: not dispatched: {sent.detail}")
    return lines


@jobs.command("sweep")
@click.option("--now", "at", type=IsoTime(), help="Sweep as of this time (default: now).")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--forever", is_flag=True, help="Sweep again every --interval seconds.")
@click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(0.05, 3600))
@click.option("--json", "as_json", is_flag=True, help="One JSON document per pass.")
def sweep_command(
    at: datetime | None, limit: int, forever: bool, interval: float, as_json: bool
) -> None:
    """Dispatch jobs left routed, fail stale ones, route due retries again, and re-dispatch
    jobs a lane accepted but never started (then fall back)."""
    if at is not None and at < datetime.now(UTC) - timedelta(minutes=1):
        raise click.BadParameter(
            f"{at.isoformat()} is in the past: a sweep appends events dated --now, and the "
            "event log never goes back in time",
            param_hint="'--now'",
        )
    s = resources(click.get_current_context())
    actions = ActionsReport()
    with errors():
        webhook = alert_webhook()
        lanes = s.dispatcher()
        client = httpx.Client()
        s.on_close(client.close)
        while True:
            when = at or datetime.now(UTC)
            try:
                report = sweep(lanes, when, limit)
                s.catch_up()
                seen = oversee(lanes, s.budgets(), s.registry(), when, webhook, client)
            except DatabaseUnavailable as exc:
                if not forever:
                    raise
                click.echo(f"sweep failed ({exc}); again in {interval:g}s", err=True)
                time.sleep(interval)
                continue
            if as_json:
                echo_json(report.as_json() | seen.as_json())
            else:
                click.echo("\n".join(_lines(report) + seen.lines()))
            for lane, why in seen.stopped:
                actions.error(f"lane {lane} stopped: {why}", "sweep")
            for sent in report.sent:
                if not sent.ok:
                    actions.warning(f"job {sent.job_id} not dispatched: {sent.detail}", "sweep")
            actions.summary(
                "Sweep",
                ["stale", "retried", "undelivered", "dispatched", "not dispatched"],
                [
                    [
                        len(report.stale),
                        len(report.retried),
                        len(report.undelivered),
                        sum(s.ok for s in report.sent),
                        sum(not s.ok for s in report.sent),
                    ]
                ],
            )
            if not forever:
                return
            time.sleep(interval)


jobs.add_command(rollout)
jobs.add_command(archive)
jobs.add_command(archived)
jobs.add_command(webhooks)
