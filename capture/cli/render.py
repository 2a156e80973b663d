"""Text for people: aligned tables, a job's history, lane statistics, active jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from jobstore import LANES, reads


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float | Decimal):
        number = float(value)
        return f"{number:.4g}" if abs(number) < 1000 else f"{number:,.0f}"
    if isinstance(value, timedelta):
        return str(timedelta(seconds=round(value.total_seconds())))
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str], render: Callable = fmt) -> str:
    """Rows aligned under their column names."""
    cells = [[render(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def progress_bar(
    done: int, total: int | None, width: int = 20, status: str | None = None, items: int = 0
) -> str:
    """A job's progress: done of total; a finished job's items; with no total yet, what
    is done so far; and "nothing to do" for a job that found none."""
    if status == "completed":
        done, total = max(done, items), max(total or 0, done, items)
        if not total:
            return "nothing to do"
    if total == 0:
        return "nothing to do"
    if not total:
        return f"{done} so far" if status not in FINAL else f"{done}"
    filled = min(width, round(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


FINAL = ("completed", "failed", "cancelled")


def flat(fields: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """An event's fields with the objects inside spelled out: params.requested_by=ci."""
    out: list[tuple[str, Any]] = []
    for key, value in fields.items():
        if isinstance(value, dict) and value:
            out += flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


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
                f"{k}={fmt(v)}" for k, v in flat(e["fields"]) if v not in (None, "", [], {})
            ),
        }
        for e in doc["events"]
    ]
    return "\n".join(lines) + "\n\n" + table(rows, ["#", "time", "event", "fields"])


def render_stats(doc: dict[str, Any]) -> str:
    rows = [{"lane": lane, **doc[lane]} for lane in (*LANES, "total")]
    first = ["lane", "pending", "processing", "completed", "failed", "cancelled", "success_rate"]
    second = [
        "lane",
        "wait_p50_s",
        "wait_p95_s",
        "run_p50_s",
        "run_p95_s",
        "items_per_hour",
        "points_per_item",
        "estimated_cost",
        "cost_per_item",
    ]
    cost = doc["cost"]
    saving = (
        f"saving {cost['saving']:.4f} ({cost['saving_percent']}%)"
        if cost["saving_percent"] is not None
        else "no Inngest baseline yet"
    )
    dispatch = [{"lane": lane, **values} for lane, values in doc.get("dispatch", {}).items()]
    window = {"1h": "the last hour", "1d": "the last day", "7d": "the last week"}
    span = window.get(doc.get("window", "all"), "all time")
    return "\n\n".join(
        [
            f"over {span} (pending and processing: now)",
            table(rows, first),
            table(rows, second),
            *([table(dispatch, ["lane", *reads.DISPATCH_FIELDS])] if dispatch else []),
            f"cost {cost['actual']:.4f} against all-Inngest {cost['all_inngest_baseline']:.4f}: "
            + saving,
        ]
    )


def render_active(rows: list[dict]) -> str:
    if not rows:
        return "no active jobs"
    for row in rows:
        row["progress"] = progress_bar(
            row["items_done"], row["items_total"], status=row["status"], items=row["items"]
        )
        row["job"] = str(row["job_id"])[:8]
    columns = ["job", "job_type", "repository", "lane", "status", "attempt", "progress"]
    return table(rows, columns)


def bootstrap_line(progress: dict) -> str:
    """One line: how far the fleet's bootstrap is."""
    return (
        f"bootstrap: {progress['done']} of {progress['tracked']} done, "
        f"{progress['in_progress']} in progress, {progress['waiting']} waiting, "
        f"{progress['failed']} failed"
    )
