"""Prometheus metrics (the official client's text format) from the health snapshot: jobs
enqueued, started, ended and failed per lane and job type as counters, queue wait and run
time as histograms (from the rollups the views keep, so `rate()` and
`histogram_quantile()` work and a scrape reads a few rows), and as gauges lane depth, lanes
down, stuck jobs, budgets, freshness breaches and projection lag."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from capture.ops.health import Health
from capture.webhooks.receiver import REJECTED
from jobstore import LANES
from jobstore import SECONDS_BOUNDS as BOUNDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# job_totals column -> (counter name without _total, help)
COUNTERS = {
    "enqueued": ("prcapture_jobs_enqueued", "Jobs first routed to the lane"),
    "started": ("prcapture_job_attempts_started", "Attempts started"),
    "completed": ("prcapture_jobs_completed", "Jobs completed"),
    "attempts_failed": ("prcapture_job_attempts_failed", "Attempts that failed"),
    "retried": ("prcapture_jobs_retried", "Failures followed by another attempt"),
    "rescheduled": ("prcapture_jobs_rescheduled", "Attempts ended for a later one, unfailed"),
    "cancelled": ("prcapture_jobs_cancelled", "Jobs cancelled"),
    "dispatch_failures": ("prcapture_job_dispatch_failures", "Dispatches a lane refused"),
    "fallbacks_in": ("prcapture_job_fallbacks_in", "Jobs that fell back into the lane"),
    "items": ("prcapture_job_items", "Items captured"),
    "api_points": ("prcapture_job_api_points", "GitHub API points spent"),
    "runs": ("prcapture_job_runs", "Runs billed"),
    "steps": ("prcapture_job_steps", "Steps billed"),
    "billed_minutes": ("prcapture_job_billed_minutes", "Runner minutes billed"),
    "run_seconds": ("prcapture_job_run_seconds_spent", "Seconds attempts ran"),
}
HISTOGRAMS = {
    "wait": ("prcapture_job_wait_seconds", "Time from enqueue to first start"),
    "run": ("prcapture_job_run_seconds", "Run time of completed jobs"),
}
LABELS = ["lane", "job_type"]


def _number(value: Any) -> float:
    return float(value) if value is not None else float("nan")


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus' cumulative buckets."""
    out, seen = [], 0
    for bound, n in zip([*(str(float(b)) for b in BOUNDS), "+Inf"], counts, strict=True):
        seen += n
        out.append((bound, float(seen)))
    return out


def job_families(totals: list[dict[str, Any]]) -> Iterator[Metric]:
    """The counters and histograms of job_totals rows."""
    for column, (name, doc) in COUNTERS.items():
        family = CounterMetricFamily(name, doc, labels=LABELS)
        for row in totals:
            family.add_metric([row["lane"], row["job_type"]], float(row[column]))
        yield family
    for kind, (name, doc) in HISTOGRAMS.items():
        histogram = HistogramMetricFamily(name, doc, labels=LABELS)
        for row in totals:
            histogram.add_metric(
                [row["lane"], row["job_type"]],
                _buckets(row[f"{kind}_hist"]),
                sum_value=float(row[f"{kind}_sum"]),
            )
        yield histogram


class HealthCollector(Collector):
    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h = self.health
        jobs = GaugeMetricFamily(
            "prcapture_jobs", "Jobs waiting and running now, per lane", labels=["lane", "state"]
        )
        for lane in LANES:
            for state in ("pending", "processing"):
                jobs.add_metric([lane, state], _number(h.lanes[lane][state]))
        yield jobs
        yield from job_families(h.totals)
        down = GaugeMetricFamily(
            "prcapture_lane_down", "1 when a lane is down or stopped", labels=["lane"]
        )
        for lane in LANES:
            down.add_metric([lane], 1.0 if lane in h.down else 0.0)
        yield down
        yield GaugeMetricFamily(
            "prcapture_jobs_stuck", "Jobs silent past their lane's limit", value=len(h.stuck)
        )
        yield GaugeMetricFamily(
            "prcapture_jobs_quarantined",
            "Jobs set aside because their events cannot be read",
            value=len(h.quarantined),
        )
        remaining = GaugeMetricFamily(
            "prcapture_budget_remaining", "API points left", labels=["credential", "resource"]
        )
        limit = GaugeMetricFamily(
            "prcapture_budget_limit", "API points an hour", labels=["credential", "resource"]
        )
        for row in h.budgets:
            labels = [row["label"] or row["credential"], row["resource"]]
            remaining.add_metric(labels, _number(row["remaining"]))
            limit.add_metric(labels, _number(row["limit"]))
        yield from (remaining, limit)
        breached = GaugeMetricFamily(
            "prcapture_freshness_breached", "Tracked repositories past target", labels=["tier"]
        )
        for tier in ("hot", "warm", "cold"):
            breached.add_metric([tier], h.breached.get(tier, 0))
        yield breached
        yield GaugeMetricFamily(
            "prcapture_repositories_gone",
            "Tracked repositories GitHub no longer shows (deleted, private, uninstalled)",
            value=len(h.gone),
        )
        yield GaugeMetricFamily(
            "prcapture_projection_lag_events", "Events not yet in the views", value=h.lag
        )
        cost = GaugeMetricFamily(
            "prcapture_cost", "Estimated cost against all-Inngest", labels=["kind"]
        )
        cost.add_metric(["actual"], _number(h.cost.get("actual")))
        cost.add_metric(["all_inngest"], _number(h.cost.get("all_inngest_baseline")))
        yield cost
        yield from webhook_families(h)


def webhook_families(h: Health) -> Iterator[Metric]:
    """Deliveries counted (stored ones from webhook_counts; refused ones by this process,
    which wrote nothing of them), the processing lag, and silent installations."""
    deliveries = CounterMetricFamily(
        "prcapture_webhook_deliveries",
        "Webhook deliveries: received, pulled (read from the log), duplicate, processed, "
        "refreshed, quarantined",
        labels=["outcome", "event"],
    )
    for row in h.webhook_counts:
        deliveries.add_metric([row["name"], row["event"]], float(row["n"]))
    yield deliveries
    rejected = CounterMetricFamily(
        "prcapture_webhook_deliveries_rejected",
        "Webhook deliveries refused by this server (signature, headers, body)",
        labels=["reason"],
    )
    for reason in ("signature", "headers", "body"):
        rejected.add_metric([reason], float(REJECTED.counts.get(reason, 0)))
    yield rejected
    yield GaugeMetricFamily(
        "prcapture_webhook_lag_seconds",
        "How long the oldest delivery not yet acted on has waited",
        value=h.webhook_lag,
    )
    yield GaugeMetricFamily(
        "prcapture_webhook_silent_installations",
        "Installations whose repositories changed on GitHub with no delivery from them",
        value=len(h.silent),
    )
    yield GaugeMetricFamily(
        "prcapture_webhook_receiver_unreachable",
        "1 when GitHub's deliveries are read from its log because none reach the receiver",
        value=1.0 if h.unreachable else 0.0,
    )


def render(health: Health) -> bytes:
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    return generate_latest(registry)
