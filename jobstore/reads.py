"""The read side as documents: jobs from the views, a job's history, lane statistics.

This is a read-only module: it never writes, so it works against a read replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from jobstore.db import Database
from jobstore.errors import InvalidSpec
from jobstore.projection import audit_fields
from jobstore.routing import LANES
from jobstore.store import JobStore

STAT_FIELDS = (
    "pending",
    "processing",
    "completed",
    "failed",
    "cancelled",
    "success_rate",
    "wait_p50_s",
    "wait_p95_s",
    "run_p50_s",
    "run_p95_s",
    "items_per_hour",
    "points_per_item",
    "estimated_cost",
    "cost_per_job",
    "cost_per_item",
)
STATE_FIELDS = (
    "status",
    "lane",
    "rule",
    "reason",
    "attempt",
    "failures",
    "worker",
    "ref",
    "done",
    "total",
    "items",
    "api_points",
    "cursor",
    "not_before",
    "error",
)
COUNTS = ("pending", "processing", "completed", "failed", "cancelled")


def job_history(store: JobStore, job_id: str, at: datetime | None = None) -> dict[str, Any]:
    """The job's events (up to `at`) and the state they add up to."""
    job = store.get(job_id)
    events = store.history(job.id)
    if at is not None:
        events = [e for e in events if e.timestamp <= at]
        if not events:
            created = job.created_on.isoformat()
            raise InvalidSpec("at", f"job {job.id} did not exist yet (created {created})")
    state = None
    for event in events:
        state = event.mutate(state)
    assert state is not None
    return {
        "job_id": job.id,
        "job_type": state.job_type,
        "repository": state.repository,
        "at": at,
        "state": {f: getattr(state, f) for f in STATE_FIELDS}
        | {"status": state.status.value, "since": state.since, "until": state.until},
        "events": [
            {
                "version": e.originator_version,
                "time": e.timestamp,
                "event": type(e).__name__,
                "fields": audit_fields(e),
            }
            for e in events
        ],
    }


DISPATCH_FIELDS = (
    "dispatched_last_hour",
    "refused_last_hour",
    "last_taken",
    "last_refused",
    "fallbacks_in",
    "fallbacks_out",
)


def stats(lane_rows: list[dict], dispatch_rows: list[dict] | None = None) -> dict[str, Any]:
    """Per lane and total (the original HybridQueueStats shape, extended), plus cost and
    how dispatching to each lane went."""
    by_lane = {row["lane"]: row for row in lane_rows}
    empty = {f: 0 if f in COUNTS else None for f in STAT_FIELDS}
    doc: dict[str, Any] = {
        lane: {f: (by_lane.get(lane) or empty)[f] for f in STAT_FIELDS}
        for lane in (*LANES, "total")
    }
    actual = float(doc["total"]["estimated_cost"] or 0)
    baseline = float((by_lane.get("total") or {}).get("inngest_cost") or 0)
    doc["cost"] = {
        "actual": round(actual, 4),
        "all_inngest_baseline": round(baseline, 4),
        "saving": round(baseline - actual, 4),
        "saving_percent": round(100 * (baseline - actual) / baseline, 1) if baseline else None,
    }
    doc["dispatch"] = {
        row["lane"]: {f: row[f] for f in DISPATCH_FIELDS} for row in dispatch_rows or []
    }
    return doc


@dataclass(frozen=True)
class JobFilter:
    """Which jobs of `capture_jobs` to read; unset fields match every job."""

    status: str | None = None
    lane: str | None = None
    job_type: str | None = None
    repository: str | None = None
    since: datetime | None = None
    limit: int = 50
    until: datetime | None = None  # created before this
    error: str | None = None  # the last error contains this (case-insensitive)

    @property
    def is_empty(self) -> bool:
        fields = (self.status, self.lane, self.job_type, self.repository, self.since)
        return not any(fields) and self.until is None and not self.error

    def where(self) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        for column, value in (
            ("status", self.status),
            ("lane", self.lane),
            ("job_type", self.job_type),
        ):
            if value:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if self.repository:
            clauses.append(sql.SQL("lower(repository) = lower(%s)"))
            params.append(self.repository)
        if self.since:
            clauses.append(sql.SQL("created_at >= %s"))
            params.append(self.since)
        if self.until:
            clauses.append(sql.SQL("created_at < %s"))
            params.append(self.until)
        if self.error:
            clauses.append(sql.SQL("last_error ILIKE %s"))
            params.append("%" + self.error.replace("%", r"\%").replace("_", r"\_") + "%")
        return sql.SQL(" AND ").join(clauses), params


def select(db: Database, query: sql.Composable | str, params: Any = ()) -> list[dict]:
    """Rows of a read-only query as dicts."""
    return db.rows(query, params)


HEAD_COLUMNS = (
    "job_id, job_type, repository, status, lane, priority, attempt, version, "
    "created_at, last_event_at"
)


def current_jobs(db: Database, where: JobFilter) -> list[dict]:
    """Jobs from `job_heads` (written with the events, so never behind), newest first."""
    if where.error:
        raise InvalidSpec("error", "cannot filter on the error here (use bin/jobs list)")
    clause, params = where.where()
    query = sql.SQL(
        "SELECT " + HEAD_COLUMNS + " FROM job_heads WHERE {} "
        "ORDER BY created_at DESC, job_id LIMIT %s"
    ).format(clause)
    return select(db, query, [*params, where.limit])


def list_jobs(db: Database, where: JobFilter) -> list[dict]:
    """Jobs from `capture_jobs`, newest first."""
    clause, params = where.where()
    query = sql.SQL(
        "SELECT * FROM capture_jobs WHERE {} ORDER BY created_at DESC, job_id LIMIT %s"
    ).format(clause)
    return select(db, query, [*params, where.limit])


def active_jobs(db: Database, limit: int = 40) -> list[dict]:
    """Jobs that have not ended, oldest first."""
    return select(
        db,
        "SELECT * FROM capture_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled') "
        "ORDER BY created_at LIMIT %s",
        [limit],
    )


WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7), "all": None}


def lane_statistics(
    db: Database, window: str = "all", now: datetime | None = None
) -> dict[str, Any]:
    """`stats` over a window (WINDOWS: the last hour, day, week, or all time), from the
    rollups (lane_stats_window) and lane_dispatch_stats: a few rows, whatever the history."""
    if window not in WINDOWS:
        raise InvalidSpec("window", f"{window!r} is not one of {', '.join(WINDOWS)}")
    span = WINDOWS[window]
    since = None if span is None else (now or datetime.now(UTC)) - span
    doc = stats(
        select(db, "SELECT * FROM lane_stats_window(%s)", (since,)),
        select(db, "SELECT * FROM lane_dispatch_stats"),
    )
    doc["window"] = window
    return doc


def totals(db: Database) -> list[dict]:
    """All-time counters and histograms per lane and job type (job_totals)."""
    return select(db, "SELECT * FROM job_totals ORDER BY lane, job_type")


def lane_error_rates(db: Database, since: datetime) -> dict[str, tuple[int, int]]:
    """Per lane, (failed attempts, attempts that ended) since `since` (in whole five
    minutes, from the rollups): what an error-rate alert and an automatic rollback look at."""
    rows = select(
        db,
        "SELECT lane, sum(attempts_failed)::int AS failed, "
        "sum(attempts_failed + completed)::int AS ended "
        "FROM job_rollups WHERE bucket >= date_bin('5 minutes', %s::timestamptz, 'epoch') "
        "AND lane <> 'unrouted' GROUP BY lane",
        (since,),
    )
    return {row["lane"]: (row["failed"] or 0, row["ended"] or 0) for row in rows}


def series(db: Database, since: datetime, until: datetime | None = None) -> list[dict]:
    """Per lane and five minutes since `since`: jobs enqueued and ended, their mean queue
    wait and run time, and the queue depth at the bucket's end: the dashboard's charts
    (lane_series, over the rollups)."""
    return select(
        db,
        "SELECT at, lane, created::int, finished::int, wait_s, run_s, depth::int "
        "FROM lane_series(%s, COALESCE(%s, now()))",
        (since, until),
    )


RECENT_FAILURES = (
    "SELECT job_id, job_type, repository, lane, status, attempt, last_error, last_event_at "
    "FROM capture_jobs WHERE last_error IS NOT NULL AND failures > 0 "
    "ORDER BY last_event_at DESC LIMIT %s"
)


def recent_failures(db: Database, limit: int = 20) -> list[dict]:
    """The latest attempts that failed, with the reason each gave."""
    return select(db, RECENT_FAILURES, (limit,))


LAG = (
    "SELECT count(*) AS lag FROM jobs_events WHERE notification_id > %s "
    "AND topic LIKE 'jobstore.domain:Job.%%'"
)


def projection_lag(db: Database) -> int:
    """Events recorded but not yet in the views (0: the views are current). The position
    is read first, so the count is an index range over what is new, never the whole log."""
    rows = select(
        db,
        "SELECT COALESCE(max(notification_id), 0) AS at FROM job_views_tracking "
        "WHERE application_name = 'jobs'",
    )
    return int(select(db, LAG, (rows[0]["at"],))[0]["lag"] or 0)
