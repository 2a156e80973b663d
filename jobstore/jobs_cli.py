"""`bin/jobs`: list, show, stats, watch, project and rebuild, over the views and the log."""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from jobstore import clikit, db, report
from jobstore.clikit import Group, IsoTime, errors, session
from jobstore.config import LANES
from jobstore.domain import Status
from jobstore.views import project_forever

LIST_COLUMNS = ["job_id", "job_type", "repository", "lane", "status", "attempt", "progress",
                "api_points", "created_at"]  # fmt: skip


@click.group(cls=Group)
def jobs() -> None:
    """Read the job store: jobs, their history, lane statistics, and the projector."""


def query(ctx: click.Context, sql: str, params: Any = ()) -> list[dict]:
    s = session(ctx)
    with errors():
        s.catch_up()  # the views are current when we read them
        with psycopg.connect(s.url, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only this status.")
@click.option("--lane", type=click.Choice(LANES), help="Only this lane.")
@click.option("--repo", help="Only this repository (owner/name).")
@click.option("--type", "job_type", help="Only this job type.")
@click.option("--since", type=IsoTime(), help="Only jobs created at or after this time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def list_jobs(ctx: click.Context, status, lane, repo, job_type, since, limit, as_json) -> None:  # noqa: ANN001
    """List jobs, newest first."""
    where, params = ["true"], []
    for column, value in (("status", status), ("lane", lane), ("job_type", job_type)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if repo:
        where.append("lower(repository) = lower(%s)")
        params.append(repo)
    if since:
        where.append("created_at >= %s")
        params.append(since)
    rows = query(
        ctx,
        f"SELECT * FROM capture_jobs WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, job_id LIMIT %s",
        [*params, limit],
    )
    if as_json:
        clikit.echo_json(rows)
        return
    for row in rows:
        row["progress"] = f"{row['items_done']}/{row['items_total'] or '?'}"
    click.echo(clikit.table(rows, LIST_COLUMNS) if rows else "no jobs")


@jobs.command()
@click.argument("job_id")
@click.option("--at", type=IsoTime(), help="Show the state as it was at this time.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def show(ctx: click.Context, job_id: str, at: datetime | None, as_json: bool) -> None:
    """The whole event history of a job and its state (now, or --at a time)."""
    with errors():
        document = report.job_history(session(ctx).store, job_id, at)
    if as_json:
        clikit.echo_json(document)
    else:
        click.echo(report.render_history(document))


@jobs.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Per-lane and total counts, timings and cost, with the saving against all-Inngest."""
    document = report.stats(query(ctx, "SELECT * FROM lane_stats"),
                            query(ctx, "SELECT * FROM job_costs"),
                            query(ctx, "SELECT * FROM lane_dispatch_stats"))  # fmt: skip
    if as_json:
        clikit.echo_json(document)
    else:
        click.echo(report.render_stats(document))


@jobs.command()
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60))
@click.option("--once", is_flag=True, help="Print the view once and exit.")
@click.pass_context
def watch(ctx: click.Context, interval: float, once: bool) -> None:
    """A live view of active jobs with progress bars (Ctrl-C to stop)."""
    while True:
        rows = query(
            ctx,
            "SELECT * FROM capture_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled') "
            "ORDER BY created_at LIMIT 40",
        )
        screen = report.render_active(rows)
        if once or not sys.stdout.isatty():
            click.echo(screen)
            return
        click.clear()
        click.echo(screen)
        time.sleep(interval)


@jobs.command()
@click.option("--forever", is_flag=True, help="Keep projecting new events until stopped.")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between catch-ups (the fallback when LISTEN drops).")  # fmt: skip
@click.pass_context
def project(ctx: click.Context, forever: bool, poll: float) -> None:
    """Bring the views up to date (once, or --forever)."""
    s = session(ctx)
    with errors():
        click.echo(f"applied {s.catch_up()} events")
        if not forever:
            return
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        assert s.url is not None
        project_forever(db.eventsourcing_env(s.url), stop, poll)


@jobs.command()
@click.pass_context
def rebuild(ctx: click.Context) -> None:
    """Rebuild every view from the event log (one transaction; readers see old or new)."""
    s = session(ctx)
    with errors():
        count = s.views.rebuild(s.store)
    click.echo(f"rebuilt from {count} events")


@jobs.command()
@click.argument("job_id")
@click.option("--reason", default="cancelled by an operator", show_default=True)
@click.pass_context
def cancel(ctx: click.Context, job_id: str, reason: str) -> None:
    """Cancel a job that has not ended (a running worker stops at its next checkpoint)."""
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="'--reason'")
    s = session(ctx)
    with errors():
        job = s.store.cancel(job_id, reason[:500])
    click.echo(f"job {job.id} cancelled ({reason})")
