"""The operating picture, read from the views and tables at one moment: lane depth and
timings, error rates, lanes down, stuck jobs, API budgets, freshness breaches, projection
lag. The Prometheus metrics show it and the alert rules judge it (the same numbers)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from capture.freshness.registry import Registry
from capture.github.ledger import PostgresBudgets
from capture.settings import WebhookSettings
from capture.webhooks import status as webhook_status
from jobstore import LANES, STOPPED, ConfigError, Database, Dispatcher, reads

ERROR_WINDOW = timedelta(hours=1)


QUARANTINE_SHOWN = 1000  # quarantined jobs counted (a fleet's worth is a bigger problem)


@dataclass
class Health:
    at: datetime
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)  # lane_stats rows
    totals: list[dict[str, Any]] = field(default_factory=list)  # job_totals rows
    errors: dict[str, tuple[int, int]] = field(default_factory=dict)  # (failed, ended)
    down: dict[str, str] = field(default_factory=dict)  # lane -> why
    stuck: list[str] = field(default_factory=list)  # job ids silent past their limit
    quarantined: list[str] = field(default_factory=list)  # job ids set aside, unreadable
    budgets: list[dict[str, Any]] = field(default_factory=list)
    breached: Counter = field(default_factory=Counter)  # tier -> repositories past target
    breached_names: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # tracked repositories GitHub no longer shows
    lag: int = 0
    cost: dict[str, Any] = field(default_factory=dict)
    webhook_counts: list[dict[str, Any]] = field(default_factory=list)  # webhook_counts rows
    webhook_lag: float = 0.0  # seconds the oldest delivery not acted on has waited
    silent: list[dict[str, Any]] = field(default_factory=list)  # installations gone quiet
    unreachable: dict[str, Any] | None = None  # GitHub not reaching the webhook receiver

    def error_rate(self, lane: str) -> float:
        failed, ended = self.errors.get(lane, (0, 0))
        return failed / ended if ended else 0.0


def snapshot(
    db: Database,
    dispatcher: Dispatcher,
    budgets: PostgresBudgets,
    registry: Registry,
    now: datetime,
    silence: timedelta | None = None,
) -> Health:
    """Everything the metrics and alerts need, read once (`silence`: how long an
    installation whose repositories changed may go without a delivery)."""
    store = dispatcher.store
    stats = reads.lane_statistics(db)
    health = Health(at=now, lanes={lane: stats[lane] for lane in LANES}, cost=stats["cost"])
    health.totals = reads.totals(db)
    health.errors = reads.lane_error_rates(db, now - ERROR_WINDOW)
    health.down = {
        lane: why
        for lane, why in dispatcher.down(now).items()
        # an unconfigured lane is off, not down; a stopped one is down
        if lane not in dispatcher.problems or why.startswith(STOPPED)
    }
    health.stuck = [str(job_id) for job_id in store.stuck(now)]
    health.quarantined = [str(row["job_id"]) for row in store.quarantined(QUARANTINE_SHOWN)]
    health.budgets = budgets.snapshot(now)
    rows = registry.breached()
    health.breached = Counter(row["effective_tier"] for row in rows)
    health.breached_names = [row["repository"] for row in rows]
    health.gone = [row["repository"] for row in registry.gone_list()]
    health.lag = reads.projection_lag(db)
    health.webhook_counts = webhook_status.counts(db)
    health.webhook_lag = webhook_status.lag(db, now)[0]
    if silence is None:  # CAPTURE_WEBHOOK_SILENCE_MINUTES (checked when the server started)
        try:
            silence = timedelta(minutes=WebhookSettings.load().silence_minutes)
        except ConfigError:
            silence = timedelta(minutes=60)
    health.silent = [r for r in webhook_status.installations(db, now, silence) if r["silent"]]
    health.unreachable = webhook_status.unreachable(db, now, webhook_status.UNREACHABLE_FOR)
    return health
