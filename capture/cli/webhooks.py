"""`bin/jobs webhooks`: GitHub's deliveries as received and acted on: the lag, counts,
installations (last delivery, what the reconciler confirmed, silent ones), the latest
deliveries, the quarantined and the redeliveries asked for that have not come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from capture.cli import render
from capture.cli.common import echo_json, errors, resources
from capture.settings import WebhookSettings
from capture.webhooks.status import overview
from jobstore import ConfigError


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def webhooks(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Webhook deliveries: lag, counts, installations, latest, failures."""
    try:
        silence = timedelta(minutes=WebhookSettings.load().silence_minutes)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with errors():
        doc = overview(resources(ctx).store.database("webhooks"), datetime.now(UTC), silence, limit)
    if as_json:
        echo_json(doc)
        return
    click.echo(f"waiting to be acted on: {doc['waiting']} (oldest {doc['lag_seconds']} s)")
    counted = {(r["name"], r["event"]): r["n"] for r in doc["counts"]}
    totals: dict[str, int] = {}
    for (name, _), n in counted.items():
        totals[name] = totals.get(name, 0) + n
    click.echo("deliveries: " + (", ".join(f"{k} {v}" for k, v in totals.items()) or "none yet"))
    if doc["unreachable"]:
        u = doc["unreachable"]
        click.echo(
            f"GitHub is not reaching the receiver: {u['pulled']} deliveries read from its log "
            f"since the last one it posted ({u['last_posted'] or 'never'})"
        )
    last = doc["last_reconcile"]
    if last:
        detail = last["error"] or (
            f"{last['listed']} listed, {last['failed']} never received, "
            f"{last['redelivered']} asked for again, {last['unresolved']} unresolved"
        )
        click.echo(f"last reconciliation: {last['at']:%Y-%m-%d %H:%M:%S} UTC: {detail}")
    sections = (
        (
            "installations",
            doc["installations"],
            [
                "installation_id",
                "account",
                "repositories",
                "last_delivery",
                "last_change",
                "confirmed_through",
                "silent",
            ],
        ),
        (
            "latest deliveries",
            doc["recent"],
            [
                "delivery_id",
                "event",
                "action",
                "repository",
                "status",
                "received_at",
                "processed_at",
                "duplicates",
            ],
        ),
        (
            "quarantined",
            doc["quarantined"],
            ["delivery_id", "event", "action", "repository", "received_at", "note"],
        ),
        (
            "redeliveries not yet received",
            doc["unresolved"],
            ["guid", "event", "failed_at", "requests", "requested_at", "last_error"],
        ),
    )
    for title, rows, columns in sections:
        if rows:
            click.echo(f"\n{title}:")
            click.echo(render.table(rows, columns))
