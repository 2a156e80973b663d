"""What each job event adds to the rollups (job_rollups, per five minutes) and the all-time totals
(job_totals): counters of jobs enqueued, started, ended and retried per lane and job type,
and histograms of queue wait and run time. Pure, no I/O: the views fold them with
capture_jobs in one transaction, so a scrape or a page reads a few rows, never history.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from jobstore.domain import Job

Row = dict[str, Any]
# Histogram bucket upper bounds in seconds (Prometheus' `le`); a last bucket is +Inf. The
# same list is jobstore_seconds_bounds() in schema/017_rollups.sql (a test holds them equal).
BOUNDS = (
    0.1,
    0.5,
    1,
    2.5,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    43200,
    86400,
)
COUNTERS = (
    "enqueued",
    "started",
    "completed",
    "attempts_failed",
    "retried",
    "rescheduled",
    "cancelled",
    "dispatch_failures",
    "fallbacks_in",
    "fallbacks_out",
    "items",
    "api_points",
    "runs",
    "steps",
    "billed_minutes",
)
SUMS = ("run_seconds", "wait_sum", "run_sum")
HISTOGRAMS = ("wait_hist", "run_hist")
COLUMNS = (*COUNTERS, *SUMS, *HISTOGRAMS)
UNROUTED = "unrouted"
# Numbers of capture_jobs whose growth is added as it happens.
_GROWTH = ("items", "api_points", "runs", "steps", "billed_minutes", "run_seconds")


def bucket_of(at: datetime) -> datetime:
    """The five minutes `at` falls in (the dashboard's step)."""
    return at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)


def observe(seconds: float) -> list[int]:
    """One observation as histogram bucket counts."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[bisect.bisect_left(BOUNDS, seconds)] += 1
    return counts


class Deltas:
    """What a batch of events adds, per (five minutes, lane, job type)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[datetime, str, str], Row] = {}

    @classmethod
    def merged(cls, parts: Iterable[Deltas]) -> Deltas:
        """Several jobs' deltas as one."""
        whole = cls()
        for part in parts:
            for key, row in part.rows.items():
                _add(whole.rows.setdefault(key, _zero()), row)
        return whole

    def _row(self, at: datetime, lane: str | None, job_type: str) -> Row:
        key = (bucket_of(at), lane or UNROUTED, job_type)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _zero()
        return row

    def add(self, before: Row | None, after: Row, event: Any) -> None:
        """Counts `event`, which took a job's capture_jobs row from `before` to `after`."""
        at: datetime = event.timestamp
        row = self._row(at, after["lane"], after["job_type"])
        for name in _GROWTH:
            row[name] += (after[name] or 0) - ((before or {}).get(name) or 0)
        if isinstance(event, Job.Routed):
            if before is None or before["routed_at"] is None:
                row["enqueued"] += 1
            if event.fallback_from:
                row["fallbacks_in"] += 1
                self._row(at, event.fallback_from, after["job_type"])["fallbacks_out"] += 1
        elif isinstance(event, Job.DispatchFailed):
            row["dispatch_failures"] += 1
        elif isinstance(event, Job.Started):
            row["started"] += 1
            if before is not None and before["started_at"] is None:
                self._observe(row, "wait", (at - after["created_at"]).total_seconds())
        elif isinstance(event, Job.Completed):
            row["completed"] += 1
            self._observe(row, "run", after["run_seconds"])
        elif isinstance(event, Job.Failed):
            row["attempts_failed"] += 1
        elif isinstance(event, Job.RetryScheduled):
            # after a failure (or a replay of one failed for good) the failure was not final
            failed = before is not None and before["status"] == "failed"
            row["retried" if failed else "rescheduled"] += 1
        elif isinstance(event, Job.Cancelled):
            row["cancelled"] += 1

    @staticmethod
    def _observe(row: Row, name: str, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        row[f"{name}_sum"] += seconds
        for i, n in enumerate(observe(seconds)):
            row[f"{name}_hist"][i] += n

    def records(self) -> list[Row]:
        """One record per (five minutes, lane, job type), as job_rollups columns."""
        return [
            {"bucket": b, "lane": lane, "job_type": t, **row}
            for (b, lane, t), row in self.rows.items()
            if _moved(row)
        ]

    def totals(self) -> list[Row]:
        """The same, summed over time, as job_totals columns."""
        summed: dict[tuple[str, str], Row] = {}
        for (_, lane, job_type), row in self.rows.items():
            into = summed.setdefault((lane, job_type), _zero())
            _add(into, row)
        return [
            {"lane": lane, "job_type": t, **row} for (lane, t), row in summed.items() if _moved(row)
        ]


def _zero() -> Row:
    return (
        {c: 0 for c in COUNTERS}
        | {c: 0.0 for c in SUMS}
        | {c: [0] * (len(BOUNDS) + 1) for c in HISTOGRAMS}
    )


def _add(into: Row, row: Row) -> None:
    for c in (*COUNTERS, *SUMS):
        into[c] += row[c]
    for c in HISTOGRAMS:
        into[c] = [a + b for a, b in zip(into[c], row[c], strict=True)]


def _moved(row: Row) -> bool:
    return any(row[c] for c in (*COUNTERS, *SUMS)) or any(any(row[c]) for c in HISTOGRAMS)
