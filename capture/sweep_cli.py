"""`bin/jobs sweep`: the periodic pass that dispatches, heals and retries (DESIGN §4, §5)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from capture.dispatching import dispatcher
from jobstore.actions_report import ActionsReport
from jobstore.clikit import IsoTime, echo_json, errors, session
from jobstore.errors import DatabaseUnavailable
from jobstore.jobs_cli import jobs
from jobstore.sweeper import SweepReport, sweep


def _lines(report: SweepReport) -> list[str]:
    lines = [
        f"stale jobs failed (retried from their cursor): {len(report.stale)}",
        f"due retries routed again: {len(report.retried)}",
        f"dispatched but never started (re-dispatched): {len(report.undelivered)}",
        f"dispatched: {sum(s.ok for s in report.sent)}",
    ]
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
    s = session(click.get_current_context())
    actions = ActionsReport()
    with errors():
        lanes = dispatcher(s)
        while True:
            try:
                report = sweep(lanes, at or datetime.now(UTC), limit)
            except DatabaseUnavailable as exc:
                if not forever:
                    raise
                click.echo(f"sweep failed ({exc}); again in {interval:g}s", err=True)
                time.sleep(interval)
                continue
            if as_json:
                echo_json(report.as_json())
            else:
                click.echo("\n".join(_lines(report)))
            for sent in report.sent:
                if not sent.ok:
                    actions.warning(f"job {sent.job_id} not dispatched: {sent.detail}", "sweep")
            actions.summary(
                "Sweep",
                ["stale", "retried", "undelivered", "dispatched", "not dispatched"],
                [[len(report.stale), len(report.retried), len(report.undelivered),
                  sum(s.ok for s in report.sent), sum(not s.ok for s in report.sent)]],
            )  # fmt: skip
            s.catch_up()
            if not forever:
                return
            time.sleep(interval)
