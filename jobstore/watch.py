"""Watching jobs for what they write next (what an event stream sends): for any number of
jobs, their heads in one indexed read, and the events past the versions already seen of
those that moved in one more, on the watcher's own connection; never a replay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import sql

from jobstore.db import Database
from jobstore.errors import describe

if TYPE_CHECKING:
    from jobstore.store import JobStore

HEADS = (
    "SELECT job_id, version, status, archived_at IS NOT NULL AS archived FROM job_heads "
    "WHERE job_id = ANY(%s)"
)
# The events of each job after the version given for it (the primary key's order), with
# its head as of the same snapshot (events and head commit together): a head read before
# events written since would leave a stream past its head, never told the job ended.
AFTER = """
SELECT e.originator_id, e.originator_version, e.topic, e.state, h.version, h.status
FROM unnest(%s::uuid[], %s::int[]) AS seen(job_id, version)
JOIN job_heads h ON h.job_id = seen.job_id
JOIN {events} e ON e.originator_id = seen.job_id AND e.originator_version > seen.version
ORDER BY e.originator_id, e.originator_version
"""


class Change(NamedTuple):
    """A watched job that moved: its head now, and its events after the version seen (or
    `unreadable`: why they could not be read; the job is not followed further)."""

    version: int
    status: str
    events: list[Any]
    unreadable: str | None = None


def changes(store: JobStore, db: Database, seen: Mapping[UUID, int]) -> dict[UUID, Change]:
    """The jobs of `seen` written past the version seen of each (a job that is gone is left
    out): two statements however many jobs are watched, one when none moved."""
    if not seen:
        return {}
    read = db.rows(HEADS, (list(seen),))
    heads = {row["job_id"]: (row["version"], row["status"]) for row in read}
    moved = {job_id: head for job_id, head in heads.items() if head[0] > seen[job_id]}
    if not moved:
        return {}
    archived = {row["job_id"] for row in read if row["archived"] and row["job_id"] in moved}
    found = {
        job_id: _archived(store, job_id, seen[job_id], moved.pop(job_id)) for job_id in archived
    }
    if not moved:
        return found
    query = sql.SQL(AFTER).format(events=sql.Identifier(store.recorder.events_table_name))
    rows = db.rows(query, ([*moved], [seen[job_id] for job_id in moved]))
    events: dict[UUID, list[Any]] = {job_id: [] for job_id in moved}
    unreadable: dict[UUID, str] = {}
    for row in rows:
        job_id = row["originator_id"]
        moved[job_id] = (row["version"], row["status"])
        if job_id in unreadable:
            continue
        stored = StoredEvent(job_id, row["originator_version"], row["topic"], bytes(row["state"]))
        try:
            events[job_id].append(store.mapper.to_domain_event(stored))
        except Exception as exc:  # one bad record ends its own stream, not the others
            unreadable[job_id] = describe(exc)
    return found | {
        job_id: Change(version, status, events[job_id], unreadable.get(job_id))
        for job_id, (version, status) in moved.items()
    }


def _archived(store: JobStore, job_id: UUID, seen: int, head: tuple[int, str]) -> Change:
    """A job archived (final for good): its events after `seen`, from the archive."""
    try:
        return Change(*head, events=store.archived_since(job_id, seen))
    except Exception as exc:  # one bad chunk ends its own stream, not the others
        return Change(*head, events=[], unreadable=describe(exc))
