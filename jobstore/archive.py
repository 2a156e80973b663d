"""Retention that keeps the audit trail: finished jobs' event streams moved out of
jobs_events into job_archive, a few hundred jobs to a chunk compressed in bulk.

A batch is one transaction: the chunk is written, the jobs' heads say where it is, their
events and the superseded versions of their dedupe slots are deleted. A crash rolls the
whole batch back; a second run takes what is left. Only jobs the views have applied in
full are taken (their capture_jobs row is at their head's version), so the projection
never misses an event; it reads the log by notification id and does not mind the gaps.
Workers go on meanwhile: archived jobs are final, and a save that would still append to
one (a replay) is refused by jobstore_record.
"""

from __future__ import annotations

import json
import lzma
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent

from jobstore.db import Database
from jobstore.domain import DedupeSlot

LOCK = 0x61726368  # one archiver at a time
VIEWS_LOCK = 0x76696577  # jobstore.views.LOCK: no rebuild while a batch moves rows
FORMAT = "json+xz"  # the chunk encoding written now; every one listed in DECODE is read
BATCH = 500  # jobs per chunk: bulk compression gains little beyond
DECODE = {"json+xz": lzma.decompress, "json+zlib": zlib.decompress}
ENCODE = {
    "json+xz": lambda raw: lzma.compress(raw, preset=6),
    "json+zlib": lambda raw: zlib.compress(raw, 9),
}
FINAL = ("completed", "failed", "cancelled")

# The oldest finished jobs not yet archived, fully applied by the views, locked (workers'
# saves of them wait, the other archivers skip them).
CANDIDATES = """
SELECT h.job_id, h.version, h.dedupe_key, h.last_event_at
FROM job_heads h JOIN capture_jobs c ON c.job_id = h.job_id AND c.version = h.version
WHERE h.archived_at IS NULL AND h.status IN ('completed', 'failed', 'cancelled')
  AND h.last_event_at < %s
ORDER BY h.last_event_at
LIMIT %s
FOR UPDATE OF h SKIP LOCKED
"""
EVENTS = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM jobs_events "
    "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
)
# A slot's first event stays (an enqueue that assumes a new key collides with it) and its
# latest (what an enqueue reads); those between are read by nothing.
SLOT_TRIM = """
DELETE FROM jobs_events e USING (
    SELECT originator_id, max(originator_version) AS latest FROM jobs_events
    WHERE originator_id = ANY(%s) GROUP BY originator_id
) s
WHERE e.originator_id = s.originator_id AND e.originator_version > 1
  AND e.originator_version < s.latest
"""


@dataclass
class Report:
    """What an archive run did (or, dry, would do)."""

    jobs: int = 0
    events: int = 0
    chunks: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    slot_events: int = 0
    seconds: float = 0.0
    months: set[date] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in vars(self).items() if k != "months"}
        doc["months"] = sorted(m.isoformat()[:7] for m in self.months)
        doc["jobs_per_s"] = round(self.jobs / self.seconds, 1) if self.seconds else None
        doc["ratio"] = round(self.raw_bytes / self.stored_bytes, 1) if self.stored_bytes else None
        return doc


def month_of(at: datetime) -> date:
    return date(at.year, at.month, 1)


def encode(rows: list[dict[str, Any]]) -> bytes:
    """Stored events as one JSON document (the states are eventsourcing's own JSON)."""
    doc = [
        [
            r["notification_id"],
            r["originator_id"].hex,
            r["originator_version"],
            r["topic"],
            bytes(r["state"]).decode(),
        ]
        for r in rows
    ]
    return json.dumps(doc, separators=(",", ":")).encode()


def decode(data: bytes, fmt: str, only: UUID | None = None) -> list[tuple[int, StoredEvent]]:
    """A chunk's events (`only` one job's), as (notification id, stored event), in the
    order written."""
    try:
        unpack = DECODE[fmt]
    except KeyError:
        raise ValueError(f"archive chunk format {fmt!r} is not one this version reads") from None
    wanted = only.hex if only is not None else None
    return [
        (n, StoredEvent(UUID(hex=o), v, t, s.encode()))
        for n, o, v, t, s in json.loads(unpack(bytes(data)))
        if wanted is None or o == wanted
    ]


def _partition(conn: psycopg.Connection, month: date) -> None:
    nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    name = f"job_archive_{month:%Y_%m}"
    found = conn.execute("SELECT to_regclass(%s) AS t", (name,)).fetchone()
    if found and found["t"] is not None:
        return  # no DDL, so no lock that a reader of the month (pg_dump, psql) would hold up
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF job_archive "
        f"FOR VALUES FROM ('{month}') TO ('{nxt}')"
    )
    conn.execute(f"ALTER TABLE {name} ALTER COLUMN data SET STORAGE EXTERNAL")


def _batch(
    conn: psycopg.Connection, cutoff: datetime, now: datetime, size: int, fmt: str, dry: bool
) -> Report:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (VIEWS_LOCK,))
    heads = conn.execute(CANDIDATES, (cutoff, size)).fetchall()
    report = Report()
    if not heads:
        return report
    # A chunk holds one month's jobs, so a month's partition can be dropped or detached whole.
    month = month_of(heads[0]["last_event_at"])
    heads = [h for h in heads if month_of(h["last_event_at"]) == month]
    rows = conn.execute(EVENTS, ([h["job_id"] for h in heads],)).fetchall()
    latest = {r["originator_id"]: r["originator_version"] for r in rows}
    # a stream that does not end at its head's version is left where it is
    heads = [h for h in heads if latest.get(h["job_id"]) == h["version"]]
    ids = [h["job_id"] for h in heads]
    if not ids:
        return report
    keep = set(ids)
    rows = [r for r in rows if r["originator_id"] in keep]
    raw = encode(rows)
    data = ENCODE[fmt](raw)
    report.jobs, report.events, report.chunks = len(ids), len(rows), 1
    report.raw_bytes, report.stored_bytes = len(raw), len(data)
    report.months.add(month)
    if dry:
        return report
    _partition(conn, month)
    chunk = conn.execute("SELECT nextval('job_archive_chunk_seq') AS n").fetchone()["n"]
    conn.execute(
        "INSERT INTO job_archive (month, chunk, jobs, events, raw_bytes, first_finished, "
        "last_finished, archived_at, format, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            month,
            chunk,
            len(ids),
            len(rows),
            len(raw),
            heads[0]["last_event_at"],
            heads[-1]["last_event_at"],
            now,
            fmt,
            data,
        ),
    )
    conn.execute(
        "UPDATE job_heads SET archived_at = %s, archive_month = %s, archive_chunk = %s "
        "WHERE job_id = ANY(%s)",
        (now, month, chunk, ids),
    )
    conn.execute("DELETE FROM jobs_events WHERE originator_id = ANY(%s)", (ids,))
    slots = list({DedupeSlot.id_for(h["dedupe_key"]) for h in heads})
    report.slot_events = conn.execute(SLOT_TRIM, (slots,)).rowcount
    return report


def archive(
    db: Database,
    older_than: timedelta,
    now: datetime,
    *,
    batch: int = BATCH,
    dry_run: bool = False,
    limit: int | None = None,
    fmt: str = FORMAT,
    on_batch: Any = None,
) -> Report:
    """Archives the jobs finished more than `older_than` before `now`, a batch per
    transaction, until none is left (or `limit` jobs). Dry, it encodes one batch to say
    what a run would take and writes nothing."""
    cutoff = now - older_than
    total = Report()
    started = time.monotonic()
    while limit is None or total.jobs < limit:
        size = batch if limit is None else min(batch, limit - total.jobs)
        with db.transaction() as conn:  # dry, the batch only reads
            report = _batch(conn, cutoff, now, size, fmt, dry_run)
        if not report.jobs:
            break
        for name in ("jobs", "events", "chunks", "raw_bytes", "stored_bytes", "slot_events"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.months |= report.months
        if on_batch is not None:
            on_batch(total)
        if dry_run:
            total.jobs = archivable(db, cutoff)
            break
    total.seconds = time.monotonic() - started
    return total


def archivable(db: Database, cutoff: datetime) -> int:
    """How many finished jobs a run with this cutoff would take."""
    row = db.one(
        "SELECT count(*) AS n FROM job_heads WHERE archived_at IS NULL "
        "AND status IN ('completed', 'failed', 'cancelled') AND last_event_at < %s",
        (cutoff,),
    )
    return int(row["n"]) if row else 0


def events_of(db: Database, job_id: UUID) -> list[StoredEvent] | None:
    """An archived job's stored events, oldest first; None if it is not archived."""
    row = db.one(
        "SELECT a.format, a.data FROM job_heads h JOIN job_archive a "
        "ON a.month = h.archive_month AND a.chunk = h.archive_chunk WHERE h.job_id = %s",
        (job_id,),
    )
    if row is None:
        return None
    return [e for _, e in decode(row["data"], row["format"], only=job_id)]


def chunks(
    conn: psycopg.Connection | psycopg.Cursor,
) -> Iterator[list[tuple[int, StoredEvent]]]:
    """Every chunk's events, oldest chunk first (a rebuild of the views reads these)."""
    keys = conn.execute("SELECT month, chunk FROM job_archive ORDER BY month, chunk").fetchall()
    for key in keys:
        row = conn.execute(
            "SELECT format, data FROM job_archive WHERE month = %s AND chunk = %s",
            (key["month"], key["chunk"]),
        ).fetchone()
        if row is not None:
            yield decode(row["data"], row["format"])


def month_chunks(db: Database, month: date) -> Iterator[list[tuple[int, StoredEvent]]]:
    """One month's chunks' events, chunk by chunk."""
    keys = db.rows("SELECT chunk FROM job_archive WHERE month = %s ORDER BY chunk", (month,))
    for key in keys:
        row = db.one(
            "SELECT format, data FROM job_archive WHERE month = %s AND chunk = %s",
            (month, key["chunk"]),
        )
        if row is not None:
            yield decode(row["data"], row["format"])


def summary(db: Database) -> list[dict]:
    """Per month: chunks, jobs, events, bytes before and after compression."""
    return db.rows(
        "SELECT to_char(month, 'YYYY-MM') AS month, count(*) AS chunks, sum(jobs) AS jobs, "
        "sum(events) AS events, sum(raw_bytes) AS raw_bytes, "
        "sum(octet_length(data)) AS stored_bytes, min(first_finished) AS first_finished, "
        "max(last_finished) AS last_finished FROM job_archive GROUP BY month ORDER BY month"
    )
