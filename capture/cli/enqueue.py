"""`bin/enqueue`: validates a job request, enqueues it, records the route the router chose
and hands the job to its lane (falling back when the lane is down)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from capture.cli.actions import ActionsReport
from capture.cli.common import Command, IsoTime, echo_json, errors, resources, version_option
from capture.cli.logs import log_options
from capture.freshness.settings import load_freshness
from capture.intake import take
from capture.jobtypes import JOB_TYPES
from jobstore import LANES, PRIORITIES, TRIGGERS, JobSpec


def parse_prs(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None


@click.command(cls=Command)
@version_option
@log_options
@click.argument("job_type", type=click.Choice(sorted(JOB_TYPES)))
@click.option("--repo", required=True, help="The repository, owner/name.")
@click.option("--days", type=click.IntRange(1, 3650), help="The window: the last N days.")
@click.option("--since", type=IsoTime(), help="Window start (ISO 8601; with --until).")
@click.option("--until", type=IsoTime(), help="Window end (ISO 8601; with --since).")
@click.option("--prs", callback=parse_prs, help="Pull request numbers, e.g. 1,2,3.")
@click.option("--max-items", type=click.IntRange(1), help="At most this many items.")
@click.option("--trigger", type=click.Choice(TRIGGERS), default="manual", show_default=True)
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option("--lane", type=click.Choice(["auto", *LANES]), default="auto", show_default=True)
@click.option("--dedupe-key", help="Jobs with the same key are one job while it is active.")
@click.option("--params", help="Extra parameters, a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def enqueue(
    job_type: str,
    repo: str,
    days: int | None,
    since: datetime | None,
    until: datetime | None,
    prs: list[int],
    max_items: int | None,
    trigger: str,
    priority: str,
    lane: str,
    dedupe_key: str | None,
    params: str | None,
    as_json: bool,
) -> None:
    """Validate, enqueue, route and dispatch a capture job; print its id, lane and why."""
    ctx = click.get_current_context()
    now = datetime.now(UTC)
    with errors():
        spec = JobSpec.create(
            job_type,
            repo,
            days=days,
            since=since,
            until=until,
            pr_numbers=prs,
            max_items=max_items,
            trigger=trigger,
            priority=priority,
            dedupe_key=dedupe_key,
            params=params,
        )
        s = resources(ctx)
        freshness = load_freshness()
        intake = take(
            s.dispatcher(), s.registry(), spec, now, freshness, None if lane == "auto" else lane
        )
    result, job, sent = intake.submitted.enqueued, intake.submitted.job, intake.submitted.sent
    report = ActionsReport()
    report.outputs({"job_id": str(job.id), "lane": job.lane, "status": job.status.value})
    report.summary(
        "Enqueued",
        ["job", "type", "repository", "lane", "rule", "status"],
        [[job.id, job.job_type, job.repository, job.lane, job.rule, job.status.value]],
    )
    if sent is not None and not sent.ok:
        report.warning(f"job {job.id} not dispatched yet: {sent.detail}", "dispatch")
    if as_json:
        echo_json(intake.document())
        return
    if result.coalesced:
        click.echo(f"job {job.id} completed moments ago (same dedupe key): no new job")
        return
    if not result.created:
        click.echo(f"job {job.id} is already {job.status.value} on {job.lane} (same dedupe key)")
        return
    click.echo(f"job {job.id} routed to {job.lane} ({job.rule}: {job.reason})")
    if sent is not None and sent.ok and job.lane == "local":
        click.echo("  waiting for a local worker (bin/run-job --lane local --watch)")
    elif sent is not None and sent.ok:
        click.echo(f"  dispatched: {sent.detail}")
    elif sent is not None:
        click.echo(f"  not dispatched yet: {sent.detail}; `bin/jobs sweep` retries it", err=True)
