"""`bin/plan`: the freshness planner. Each pass bootstraps newly tracked repositories,
probes the due ones in batches (about one point per 100), enqueues a whole refresh for
those that changed, and marks the others fresh without a job."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

from capture.cli.actions import ActionsReport
from capture.cli.common import (
    Command,
    capture_settings,
    echo_json,
    errors,
    resources,
    version_option,
)
from capture.cli.logs import log_options
from capture.errors import CaptureError
from capture.freshness.loop import PassReport, plan_once
from capture.freshness.settings import load_freshness
from capture.settings import WebhookSettings
from capture.webhooks.planner import recheck
from jobstore import ConfigError, DatabaseUnavailable


def lines(report: PassReport) -> list[str]:
    if report.skipped:
        return ["another planner is running a pass: this one skipped"]
    out = [
        f"bootstrapped: {len(report.bootstrapped)}",
        f"probed: {report.probed} ({report.probe_points} points)",
        f"unchanged, marked fresh: {report.fresh}",
        f"changed, refresh enqueued: {len(report.refreshes)}",
        f"left for a later pass (budget): {report.deferred}",
    ]
    if report.comment_changes:
        out.append(
            f"comments edited without moving their pull request: {len(report.comment_changes)}"
        )
    if report.comment_probes_deferred:
        out.append(
            f"comment probes left for a later pass (REST pace or budget): "
            f"{report.comment_probes_deferred} (read this pass: {report.comment_probes})"
        )
    if report.reconciles:
        out.append(f"reconciliations enqueued: {len(report.reconciles)}")
    out += [f"  not found on GitHub: {name}" for name in report.missing]
    out += [f"  gone on GitHub, marked: {name}" for name in report.gone]
    out += [f"  back on GitHub: {name}" for name in report.back]
    out += [f"  moved on GitHub: {old} -> {new}" for old, new in report.moved.items()]
    if report.contributors_checked:
        out.append(
            f"contributor logins re-read: {report.contributors_checked} "
            f"({report.contributors_renamed} renamed)"
        )
    if report.delivered:
        out.append(f"changes found stored already (by webhook): {report.delivered}")
    hooks = report.webhooks or {}
    if hooks.get("caught_up") or hooks.get("applied") or hooks.get("confirmed"):
        out.append(
            f"webhooks: {hooks['applied']} installation/repository deliveries applied, "
            f"{hooks['caught_up']} apply jobs caught up, {hooks['confirmed']} repositories "
            "confirmed fresh"
        )
    if hooks.get("reconciled"):
        r = hooks["reconciled"]
        out.append(
            f"webhook reconciliation: {r['listed']} listed, {r['failed']} never received, "
            f"{r['pulled']} read from GitHub's log, {r['redelivered']} asked for again"
        )
    out += [f"  tracked by installation: {name}" for name in hooks.get("tracked", [])]
    out += [f"  untracked by installation: {name}" for name in hooks.get("untracked", [])]
    out += [f"  error: {error}" for error in report.errors]
    return out


def _rechecks(
    db: Any, app: Any, dispatcher: Any, lane: str | None, every: float, stop: threading.Event
) -> None:
    """Between passes, the last minutes of the App's delivery log, every `every` s."""
    while not stop.wait(every):
        try:
            done = recheck(db, app, datetime.now(UTC), dispatcher, lane)
        except DatabaseUnavailable as exc:
            click.echo(f"webhook recheck failed ({exc})", err=True)
            continue
        if done.error:
            click.echo(f"webhook recheck failed ({done.error})", err=True)
        elif done.redelivered or done.pulled:
            click.echo(
                f"webhook recheck: {done.pulled} deliveries read from GitHub's log, "
                f"{done.redelivered} asked for again"
            )


@click.command(cls=Command)
@version_option
@log_options
@click.option("--once", "mode", flag_value="once", default=True, help="One pass (the default).")
@click.option("--forever", "mode", flag_value="forever", help="A pass every --interval.")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(1, 3600))
@click.option("--json", "as_json", is_flag=True, help="One JSON document per pass.")
def plan(mode: str, interval: float, as_json: bool) -> None:
    """Keep tracked repositories fresh: probe the due ones, refresh what changed.

    Run it --forever on a host (the primary way; a scheduled workflow is a fallback:
    GitHub disables schedules in public repositories after 60 days without activity)."""
    ctx = click.get_current_context()
    try:
        settings, freshness = capture_settings(), load_freshness()
        settings.require_token()
        hooks = WebhookSettings.load()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    s = resources(ctx)
    with errors():
        found, dispatcher = s.registry(), s.dispatcher()
        gh = s.runner().github.github(realtime=False)
    stop = threading.Event()
    if mode == "forever":
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    actions = ActionsReport()
    app = gh.session.pool.app
    if mode == "forever" and hooks.enabled and app is not None:
        every = float(hooks.recheck_seconds)
        db = s.store.database("webhooks")
        own = s.dispatcher()  # the recheck thread's own (its HTTP client is not shared)
        args = (db, app, own, hooks.lane, every, stop)
        threading.Thread(target=_rechecks, args=args, daemon=True).start()
    while True:
        try:
            with errors():
                report = plan_once(
                    found,
                    dispatcher,
                    gh,
                    datetime.now(UTC),
                    freshness,
                    hooks if hooks.enabled else None,
                )
        except (DatabaseUnavailable, CaptureError) as exc:
            if mode == "once":
                raise click.ClickException(str(exc)) from None
            click.echo(f"planner pass failed ({exc}); again in {interval:g}s", err=True)
        else:
            echo_json(report.as_json()) if as_json else click.echo("\n".join(lines(report)))
            actions.outputs({"probed": report.probed, "refreshes": len(report.refreshes)})
            s.catch_up()
        if mode == "once" or stop.wait(interval):
            return
