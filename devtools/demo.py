"""`make demo`: the whole system on one machine, end to end, in about a minute.

A fresh database in the embedded PostgreSQL; the sandbox as a real local server playing
GitHub, the Actions runner (it runs the repository's real workflow files) and Inngest
(Event API plus an executor calling the served function over signed HTTP); a local
worker and the sweeper. Then a realistic mix is enqueued with `bin/enqueue`, run to
completion with progress bars, and the lane statistics, the cost comparison and one
job's audit trail are printed.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg
from psycopg import sql

from capture.cli.common import Command, version_option
from capture.cli.enqueue import enqueue
from capture.cli.jobs import jobs
from capture.cli.logs import log_options
from capture.cli.render import progress_bar, table
from devtools.playground import Playground
from devtools.sandbox import World
from jobstore import db
from jobstore.settings import Settings, load

DEMO_DB = "prcapture_demo"
REPOS = {"acme/widgets": 900, "acme/gadgets": 150, "acme/docs": 60}
FINAL = ("completed", "failed", "cancelled")


def fresh_database(settings: Settings) -> str:
    """A new, empty database for the demo next to the embedded server's default one."""
    server_url = db.database_url(settings)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (DEMO_DB,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{DEMO_DB}"))


DEMO_ENV = {
    "CAPTURE_MAX_ITEMS": "150",
    "JOBSTORE_START_DEADLINE_INNGEST": "30",
    "JOBSTORE_START_DEADLINE_GITHUB_ACTIONS": "60",
}


def requests(now: datetime) -> list[list[str]]:
    """A realistic mix: people waiting on recent work, a two-year backfill, a local job."""
    two_years = (now - timedelta(days=730)).strftime("%Y-%m-%dT00:00:00Z")
    yesterday = (now - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
    return [
        ["pr-reviews", "--repo", "acme/widgets", "--days", "7"],
        ["pr-details", "--repo", "acme/widgets", "--prs", "3,5,8"],
        ["pr-comments", "--repo", "acme/gadgets", "--days", "1"],
        ["pr-details", "--repo", "acme/docs", "--prs", "1,2", "--trigger", "webhook"],
        [
            "historical-sync",
            "--repo",
            "acme/widgets",
            "--since",
            two_years,
            "--until",
            yesterday,
            "--trigger",
            "backfill",
        ],
        ["repository-sync", "--repo", "acme/docs", "--lane", "local"],
    ]


def show_progress(url: str, deadline: float, interval: float = 1.0) -> list[dict]:
    """Progress bars until every job is final (redrawn on a terminal, lines otherwise)."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
            rows = conn.execute(
                "SELECT h.job_id, h.job_type, h.repository, h.lane, h.status, h.attempt, "
                "h.parent_id, coalesce(c.items_done, 0) AS done, c.items_total AS total, "
                "coalesce(c.items, 0) AS items "
                "FROM job_heads h LEFT JOIN capture_jobs c USING (job_id) "
                "ORDER BY h.created_at"
            ).fetchall()
        top = [r for r in rows if r["parent_id"] is None]
        children = [r for r in rows if r["parent_id"] is not None]
        for row in top:
            row["job"] = str(row["job_id"])[:8]
            row["progress"] = progress_bar(
                row["done"], row["total"], status=row["status"], items=row["items"]
            )
        screen = table(top, ["job", "job_type", "repository", "lane", "status", "progress"])
        if children:
            finished = sum(c["status"] in FINAL for c in children)
            screen += f"\nbackfill child jobs: {progress_bar(finished, len(children))} finished"
        if tty:
            click.clear()
            click.echo(screen)
        elif screen != last:
            click.echo(f"--- {datetime.now(UTC):%H:%M:%S}\n{screen}")
        last = screen
        if rows and all(r["status"] in FINAL for r in rows):
            if tty:
                click.echo()
            return rows
        if time.monotonic() > deadline:
            click.echo("the demo ran out of time; unfinished jobs are listed above", err=True)
            return rows
        time.sleep(interval)


def in_process(command: click.Command, args: list[str]) -> None:
    """Runs one of our scripts in this process, as a user would from the shell."""
    code = command.main(args, prog_name=command.name, standalone_mode=False)
    if code not in (None, 0):
        raise click.ClickException(f"{command.name} {' '.join(args)} exited {code}")


@click.command(cls=Command)
@version_option
@log_options
@click.option("--timeout", default=150.0, show_default=True, type=click.FloatRange(10, 3600))
def demo(timeout: float) -> None:
    """Run both lanes end to end against the local sandbox and print what happened."""
    started = time.monotonic()
    click.echo("== starting: embedded PostgreSQL, sandbox GitHub + Actions + Inngest")
    settings = load()
    embedded = not settings.database_url  # before the playground puts the demo's in the environment
    database_url = fresh_database(settings)
    world = World(seed=2026, now=datetime.now(UTC))
    for name, pulls in REPOS.items():
        world.add_repository(name, pulls, 730)
    playground = Playground(
        world, database_url, extra_env=DEMO_ENV, variables={"CAPTURE_MAX_ITEMS": "150"}
    )
    try:
        playground.start(os.environ.update)
        sandbox, runner, executor = playground.sandbox, playground.runner, playground.executor
        click.echo(
            f"   sandbox {playground.url}, Inngest function {playground.serve_url}, "
            f"database {DEMO_DB}"
        )
        click.echo("\n== bin/enqueue: a realistic mix")
        for args in requests(datetime.now(UTC)):
            click.echo(f"$ bin/enqueue {' '.join(args)}")
            in_process(enqueue, args)

        click.echo("\n== Inngest goes down: recent work falls back to Actions, priority high")
        sandbox.faults.add("inngest:down")
        args = ["pr-details", "--repo", "acme/gadgets", "--prs", "7,9"]
        click.echo(f"$ bin/enqueue {' '.join(args)}")
        in_process(enqueue, args)
        sandbox.faults.clear()

        click.echo("\n== running to completion")
        rows = show_progress(database_url, started + timeout)
        playground.stop.set()
        sandbox.drain()
        runs = len(sandbox.actions.runs)
        legs = sum(log.legs for log in runner.logs)
        click.echo(
            f"\nActions: {runs} workflow runs ({legs} matrix legs); "
            f"Inngest: {len(executor.runs)} function runs; "
            f"GitHub API calls: {len(sandbox.ledger.entries)}"
        )
        for run in sorted(sandbox.actions.runs.values(), key=lambda r: r.id):
            click.echo(f"   run {run.id} {run.workflow}: {run.display_title} ({run.conclusion})")
        click.echo("\n== bin/jobs stats: lanes, timings and cost")
        in_process(jobs, ["stats"])
        backfill = next(r for r in rows if r["job_type"] == "historical-sync")
        click.echo(f"\n== bin/jobs show {backfill['job_id']}: one job's audit trail")
        in_process(jobs, ["show", str(backfill["job_id"])])
        failed = [r for r in rows if r["status"] != "completed"]
        click.echo(
            f"\n== {len(rows) - len(failed)} of {len(rows)} jobs completed "
            f"in {time.monotonic() - started:.0f} s"
        )
        if failed:
            raise click.ClickException(f"{len(failed)} jobs did not complete")
        click.echo(explore(database_url, str(backfill["job_id"]), embedded=embedded))
    finally:
        playground.close()


def explore(database_url: str, job_id: str, embedded: bool = True) -> str:
    """The commands that show what the demo did: its jobs live in their own database (on
    the embedded server, which stays up for them: how to stop it is the last line)."""
    url = shlex.quote(database_url)
    stop = ["bin/db stop          # the embedded server stays up for these (make clean too)"]
    return "\n".join(
        [
            f"\n== explore what the demo did (its jobs are in the {DEMO_DB} database):",
            f"export DATABASE_URL={url}",
            "bin/jobs list",
            f"bin/jobs show {job_id[:8]}",
            "bin/jobs stats",
            "bin/db psql -c 'select lane, status, count(*) from capture_jobs group by 1, 2'",
            "unset DATABASE_URL   # back to the embedded server's default database",
            *(stop if embedded else []),
        ]
    )
