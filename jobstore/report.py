"""Documents and text for `bin/jobs`: a job's history, lane statistics, active jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobstore.clikit import fmt, progress_bar, table
from jobstore.config import LANES
from jobstore.errors import InvalidSpec
from jobstore.projection import audit_fields
from jobstore.store import JobStore

STAT_FIELDS = (
    "pending", "processing", "completed", "failed", "cancelled", "success_rate", "wait_p50_s",
    "wait_p95_s", "run_p50_s", "run_p95_s", "items_per_hour", "points_per_item",
    "estimated_cost", "cost_per_job", "cost_per_item",
)  # fmt: skip
STATE_FIELDS = (
    "status", "lane", "rule", "reason", "attempt", "failures", "worker", "ref", "done", "total",
    "items", "api_points", "cursor", "not_before", "error",
)  # fmt: skip
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


def render_history(doc: dict[str, Any]) -> str:
    when = f" at {fmt(doc['at'])}" if doc["at"] else ""
    lines = [f"job {doc['job_id']}  {doc['job_type']}  {doc['repository']}{when}"]
    state = {k: v for k, v in doc["state"].items() if v not in (None, "", 0) or k == "status"}
    lines += [f"  {key:11} {fmt(value)}" for key, value in state.items()]
    rows = [
        {
            "#": e["version"],
            "time": e["time"],
            "event": e["event"],
            "fields": " ".join(
                f"{k}={fmt(v)}" for k, v in e["fields"].items() if v not in (None, "", [], {})
            ),
        }
        for e in doc["events"]
    ]
    return "\n".join(lines) + "\n\n" + table(rows, ["#", "time", "event", "fields"])


DISPATCH_FIELDS = (
    "dispatched_last_hour", "refused_last_hour", "last_taken", "last_refused",
    "fallbacks_in", "fallbacks_out",
)  # fmt: skip


def stats(
    lane_rows: list[dict], cost_rows: list[dict], dispatch_rows: list[dict] | None = None
) -> dict[str, Any]:
    """Per lane and total (the original HybridQueueStats shape, extended), plus cost and
    how dispatching to each lane went."""
    by_lane = {row["lane"]: row for row in lane_rows}
    empty = {f: 0 if f in COUNTS else None for f in STAT_FIELDS}
    doc: dict[str, Any] = {
        lane: {f: (by_lane.get(lane) or empty)[f] for f in STAT_FIELDS}
        for lane in (*LANES, "total")
    }
    actual = float(doc["total"]["estimated_cost"] or 0)
    baseline = sum(float(row["inngest_cost"] or 0) for row in cost_rows)
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


def render_stats(doc: dict[str, Any]) -> str:
    rows = [{"lane": lane, **doc[lane]} for lane in (*LANES, "total")]
    first = ["lane", "pending", "processing", "completed", "failed", "cancelled", "success_rate"]
    second = ["lane", "wait_p50_s", "wait_p95_s", "run_p50_s", "run_p95_s", "items_per_hour",
              "points_per_item", "estimated_cost", "cost_per_item"]  # fmt: skip
    cost = doc["cost"]
    saving = (f"saving {cost['saving']:.4f} ({cost['saving_percent']}%)"
              if cost["saving_percent"] is not None else "no Inngest baseline yet")  # fmt: skip
    dispatch = [{"lane": lane, **values} for lane, values in doc.get("dispatch", {}).items()]
    return "\n\n".join([
        table(rows, first),
        table(rows, second),
        *([table(dispatch, ["lane", *DISPATCH_FIELDS])] if dispatch else []),
        f"cost {cost['actual']:.4f} against all-Inngest {cost['all_inngest_baseline']:.4f}: "
        + saving,
    ])  # fmt: skip


def render_active(rows: list[dict]) -> str:
    if not rows:
        return "no active jobs"
    for row in rows:
        row["progress"] = progress_bar(row["items_done"], row["items_total"])
        row["job"] = str(row["job_id"])[:8]
    columns = ["job", "job_type", "repository", "lane", "status", "attempt", "progress"]
    return table(rows, columns)
