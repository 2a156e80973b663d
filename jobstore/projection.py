"""Folds job events into capture_jobs rows; pure, no I/O."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from jobstore.domain import Job

Row = dict[str, Any]
DEFAULTS: Row = {
    "lane": None,
    "route_rule": None,
    "route_reason": None,
    "fallback_from": None,
    "attempt": 1,
    "failures": 0,
    "dispatch_failures": 0,
    "worker": None,
    "items_done": 0,
    "items_total": None,
    "items": 0,
    "api_points": 0,
    "cursor": None,
    "external_ref": None,
    "run_url": None,
    "last_error": None,
    "not_before": None,
    "runs": 0,
    "steps": 0,
    "run_seconds": 0.0,
    "billed_minutes": 0,
    "attempt_started_at": None,
    "routed_at": None,
    "dispatched_at": None,
    "started_at": None,
    "finished_at": None,
}
COLUMNS = (
    "job_id",
    "job_type",
    "repository",
    "lane",
    "status",
    "trigger",
    "priority",
    "since",
    "until",
    "days",
    "pr_count",
    "max_items",
    "dedupe_key",
    "parent_id",
    "route_rule",
    "route_reason",
    "fallback_from",
    "attempt",
    "failures",
    "dispatch_failures",
    "worker",
    "items_done",
    "items_total",
    "items",
    "api_points",
    "cursor",
    "external_ref",
    "run_url",
    "last_error",
    "not_before",
    "runs",
    "steps",
    "run_seconds",
    "billed_minutes",
    "attempt_started_at",
    "created_at",
    "routed_at",
    "dispatched_at",
    "started_at",
    "last_event_at",
    "finished_at",
    "version",
)


def split_ref(ref: str) -> tuple[str, str | None]:
    """A dispatch ref is an id, optionally followed by a space and its URL."""
    ident, _, url = ref.partition(" ")
    return ident, (url or None)


# Seconds a GitHub-hosted runner spends before a job's first step of ours (provisioning,
# checkout, setup-python, install): billed with the job, never in its events' times.
RUNNER_SETUP = 40.0
RIDER = "(batch of "  # in a worker's name: the attempt rode another job's run


def billed_minutes(row: Row, seconds: float) -> int:
    """Whole minutes an attempt of `seconds` adds to the bill: a runner bills each job
    rounded up, its setup included (Actions); a job that rode a batch's run adds its own
    time only, to the nearest minute (the run's setup and rounding are its leader's)."""
    if row["lane"] == "github_actions":
        if RIDER in (row["worker"] or ""):
            return round(seconds / 60)
        return max(1, math.ceil((seconds + RUNNER_SETUP) / 60))
    return max(1, math.ceil(seconds / 60))


def _end_attempt(row: Row, at: datetime) -> None:
    started = row["attempt_started_at"]
    if started is None:
        return
    seconds = max((at - started).total_seconds(), 0.0)
    row["run_seconds"] += seconds
    row["billed_minutes"] += billed_minutes(row, seconds)
    row["attempt_started_at"] = None


def apply(row: Row | None, event: Any) -> Row:
    """The capture_jobs row after `event` (a new dict; `row` is None before Queued)."""
    at: datetime = event.timestamp
    if isinstance(event, Job.Queued):
        days = None
        if event.since is not None and event.until is not None:
            days = round((event.until - event.since).total_seconds() / 86400, 3)
        row = {
            **DEFAULTS,
            "job_id": event.originator_id,
            "job_type": event.job_type,
            "repository": event.repository,
            "status": "queued",
            "trigger": event.trigger,
            "priority": event.priority,
            "since": event.since,
            "until": event.until,
            "days": days,
            "pr_count": len(event.pr_numbers),
            "max_items": event.max_items,
            "dedupe_key": event.dedupe_key,
            "parent_id": event.parent_id,
            "created_at": at,
        }
    else:
        assert row is not None, f"{type(event).__name__} before Queued"
        row = dict(row)
    row["last_event_at"], row["version"] = at, event.originator_version
    if isinstance(event, Job.Routed):
        row.update(
            status="routed",
            lane=event.lane,
            route_rule=event.rule,
            route_reason=event.reason,
            fallback_from=event.fallback_from,
            routed_at=at,
            external_ref=None,
            run_url=None,
        )
        if event.priority:
            row["priority"] = event.priority
    elif isinstance(event, Job.Dispatched):
        ident, url = split_ref(event.ref)
        row.update(status="dispatched", external_ref=ident, run_url=url, dispatched_at=at)
    elif isinstance(event, Job.DispatchFailed):
        row.update(status="routed", last_error=f"dispatch to {event.lane}: {event.error}")
        row["dispatch_failures"] += 1
    elif isinstance(event, Job.Started):
        row.update(status="running", worker=event.worker, lane=event.lane, attempt=event.attempt)
        row["started_at"] = row["started_at"] or at
        row["attempt_started_at"] = at
        row["runs"] += 1
        row["steps"] += 1
    elif isinstance(event, Job.Progressed):
        row.update(items_done=event.done, items_total=event.total)
        row["cursor"] = event.cursor if event.cursor is not None else row["cursor"]
        row["api_points"] += event.api_points
        row["steps"] += 1
    elif isinstance(event, Job.Failed):
        _end_attempt(row, at)
        row.update(status="failed", last_error=f"{event.error_type}: {event.message}")
        row.update(finished_at=at)
        row["failures"] += 1
    elif isinstance(event, Job.RetryScheduled):
        _end_attempt(row, at)
        row.update(status="retry_scheduled", attempt=event.attempt, not_before=event.not_before)
        row.update(finished_at=None, worker=None)
    elif isinstance(event, Job.Completed):
        _end_attempt(row, at)
        row.update(status="completed", items=event.items, finished_at=at, last_error=None)
        row["api_points"] += event.api_points
        # A completed job has done all its work, whatever its last checkpoint said.
        row["items_done"] = max(row["items_done"] or 0, event.items)
        row["items_total"] = max(row["items_total"] or 0, event.items)
    elif isinstance(event, Job.Cancelled):
        _end_attempt(row, at)
        row.update(status="cancelled", finished_at=at, last_error=f"cancelled: {event.reason}")
    return row


ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def audit_fields(event: Any) -> dict[str, Any]:
    """An event's own fields (without id, version and time)."""
    return {k: v for k, v in vars(event).items() if k not in ENVELOPE}
