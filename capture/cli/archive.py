"""`bin/jobs archive` and `bin/jobs archived`: retention that keeps the audit trail."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from capture.cli.common import IsoTime, echo_json, errors, resources, to_json
from capture.cli.render import table
from jobstore import archive as archives
from jobstore import audit_fields

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Span(click.ParamType):
    """A duration: `30d`, `12h`, `90m`, `3600s`."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        raw = str(value).strip().lower()
        try:
            seconds = float(raw[:-1]) * UNITS[raw[-1]]
        except (KeyError, ValueError, IndexError):
            self.fail(f"{value!r} is not a duration like 30d, 12h or 90m", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be more than zero", param, ctx)
        return timedelta(seconds=seconds)


class Month(click.ParamType):
    name = "month"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return datetime.strptime(str(value), "%Y-%m").date()
        except ValueError:
            self.fail(f"{value!r} is not a month like 2026-01", param, ctx)


@click.command()
@click.option("--older-than", type=Span(), required=True, help="Finished longer ago (30d).")
@click.option("--dry-run", is_flag=True, help="Say what would be archived; write nothing.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=archives.BATCH,
    show_default=True,
    help="Jobs per chunk and per transaction.",
)
@click.option("--limit", type=click.IntRange(1), help="Archive at most this many jobs.")
@click.option("--now", type=IsoTime(), hidden=True, help="The time it is (tests, benches).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def archive(
    ctx: click.Context,
    older_than: timedelta,
    dry_run: bool,
    batch: int,
    limit: int | None,
    now: datetime | None,
    as_json: bool,
) -> None:
    """Move finished jobs' event streams out of the live log into the archive.

    Safe while workers run, in batches (one transaction each: a crash loses and doubles
    nothing), and resumable: run it again to take what is left. Archived jobs still read
    whole with `bin/jobs show` and the API. The sweeper does the same on a schedule
    (JOBSTORE_ARCHIVE_AFTER_DAYS)."""
    s = resources(ctx)
    now = now or datetime.now(UTC)
    with errors():
        db = s.store.database("archive")

        def progress(total: archives.Report) -> None:
            if not as_json:
                click.echo(f"archived {total.jobs} jobs ({total.events} events)", err=True)

        report = archives.archive(
            db, older_than, now, batch=batch, dry_run=dry_run, limit=limit, on_batch=progress
        )
    doc = report.as_dict() | {"dry_run": dry_run, "cutoff": now - older_than}
    if as_json:
        echo_json(doc)
        return
    verb = "would archive" if dry_run else "archived"
    per_job = report.stored_bytes / report.jobs if report.jobs and not dry_run else None
    click.echo(
        f"{verb} {report.jobs} jobs finished before {to_json(now - older_than)}"
        + (f": {report.events} events in {report.chunks} chunks, " if not dry_run else "")
        + (
            f"{report.raw_bytes} bytes stored as {report.stored_bytes} "
            f"({per_job:.0f} per job), {report.slot_events} superseded dedupe-slot events "
            "dropped"
            if per_job is not None
            else ""
        )
    )


@click.command()
@click.option("--export", "month", type=Month(), help="Print a month's events as JSON lines.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def archived(ctx: click.Context, month: date | None, as_json: bool) -> None:
    """What the archive holds, per month; or, with --export 2026-01, every event of that
    month's archived jobs as JSON lines (job_id, version, at, event, fields), to query
    with jq or load elsewhere."""
    s = resources(ctx)
    with errors():
        db = s.store.database("archive")
        if month is None:
            rows = archives.summary(db)
            if as_json:
                echo_json(rows)
            else:
                click.echo(table(rows, list(rows[0])) if rows else "nothing archived yet")
            return
        store = s.store
        for chunk in archives.month_chunks(db, month):
            for _, stored in chunk:
                if not stored.topic.startswith("jobstore.domain:Job."):
                    continue
                event = store.mapper.to_domain_event(stored)
                line = {
                    "job_id": stored.originator_id,
                    "version": stored.originator_version,
                    "at": event.timestamp,
                    "event": type(event).__name__,
                    "fields": audit_fields(event),
                }
                click.echo(json.dumps(line, default=to_json, separators=(",", ":")))
