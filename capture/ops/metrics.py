"""Prometheus metrics (the official client's text format) from the health snapshot: lane
depth, wait and run quantiles, success and error ratios, lanes down, stuck jobs, budgets,
freshness breaches, projection lag. The values are the views' own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from capture.ops.health import Health
from jobstore import LANES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value: Any) -> float:
    return float(value) if value is not None else float("nan")


class HealthCollector(Collector):
    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        h = self.health
        jobs = GaugeMetricFamily(
            "prcapture_jobs", "Jobs per lane and state", labels=["lane", "state"]
        )
        for lane in LANES:
            for state in ("pending", "processing", "completed", "failed", "cancelled"):
                jobs.add_metric([lane, state], _number(h.lanes[lane][state]))
        yield jobs
        for name, field_p50, field_p95, what in (
            ("prcapture_lane_wait_seconds", "wait_p50_s", "wait_p95_s", "Queue wait"),
            ("prcapture_lane_run_seconds", "run_p50_s", "run_p95_s", "Run time"),
        ):
            family = GaugeMetricFamily(name, f"{what} per lane", labels=["lane", "quantile"])
            for lane in LANES:
                family.add_metric([lane, "0.5"], _number(h.lanes[lane][field_p50]))
                family.add_metric([lane, "0.95"], _number(h.lanes[lane][field_p95]))
            yield family
        success = GaugeMetricFamily(
            "prcapture_lane_success_ratio", "Jobs completed of those ended", labels=["lane"]
        )
        errors = GaugeMetricFamily(
            "prcapture_lane_error_ratio", "Attempts failed in the last hour", labels=["lane"]
        )
        ended = GaugeMetricFamily(
            "prcapture_lane_attempts_ended", "Attempts ended in the last hour", labels=["lane"]
        )
        down = GaugeMetricFamily(
            "prcapture_lane_down", "1 when a lane is down or stopped", labels=["lane"]
        )
        for lane in LANES:
            success.add_metric([lane], _number(h.lanes[lane]["success_rate"]))
            errors.add_metric([lane], h.error_rate(lane))
            ended.add_metric([lane], h.errors.get(lane, (0, 0))[1])
            down.add_metric([lane], 1.0 if lane in h.down else 0.0)
        yield from (success, errors, ended, down)
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


def render(health: Health) -> bytes:
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    return generate_latest(registry)
