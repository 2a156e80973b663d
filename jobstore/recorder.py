"""The event recorder: eventsourcing's PostgreSQL recorder plus job_heads in the same commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor

ROUTED_CHANNEL = "jobstore_routed"
NOTIFY_IDS = 50  # at most this many job ids in one notification (payloads < 8000 bytes)

UPSERT_HEAD = """
INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, attempt, version,
                       dedupe_key, parent_id, not_before, created_at, last_event_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (job_id) DO UPDATE SET
    status = EXCLUDED.status, lane = EXCLUDED.lane, priority = EXCLUDED.priority,
    attempt = EXCLUDED.attempt, version = EXCLUDED.version, not_before = EXCLUDED.not_before,
    last_event_at = EXCLUDED.last_event_at
WHERE job_heads.version < EXCLUDED.version
"""


INSERT_DISPATCH = (
    "INSERT INTO lane_dispatches (lane, job_id, ok, error, at) VALUES (%s, %s, %s, %s, %s)"
)


# A claim from a notification: the head moves to running only if it is still at the
# version the notification named (the Started event is written at the next version).
START_HEAD = """
UPDATE job_heads SET status = 'running', lane = %s, attempt = %s, version = %s,
                     last_event_at = %s
WHERE job_id = %s AND version < %s
"""


class StartedHead(NamedTuple):
    lane: str
    attempt: int
    version: int
    at: Any
    job_id: UUID
    same_version: int


class DispatchOutcome(NamedTuple):
    lane: str
    job_id: UUID
    ok: bool
    error: str | None
    at: Any


class Head(NamedTuple):
    job_id: UUID
    job_type: str
    repository: str
    status: str
    lane: str | None
    priority: str
    attempt: int
    version: int
    dedupe_key: str
    parent_id: UUID | None
    not_before: Any
    created_at: Any
    last_event_at: Any


class JobRecorder(PostgresApplicationRecorder):
    """Writes the `heads` (and dispatch outcomes) passed to `save()` with the events, in one
    transaction.

    If the events lose a version race the transaction rolls back, heads included.
    """

    def _insert_events(
        self, curs: Cursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        heads: Sequence[Head] = kwargs.get("heads") or ()
        if heads:
            # A fixed order keeps two writers of the same heads from deadlocking.
            curs.executemany(UPSERT_HEAD, sorted(heads, key=lambda h: h.job_id))
            routed: dict[str, list[str]] = {}
            for head in heads:
                if head.status == "routed" and head.lane:
                    hint = f"{head.job_id}:{head.version}:{head.attempt}"
                    routed.setdefault(head.lane, []).append(hint)
            for lane, ids in sorted(routed.items()):
                # "lane id:version:attempt ...": a waiting worker claims these directly
                # (hints only; large batches name just the lane and workers look).
                payload = " ".join([lane, *ids]) if len(ids) <= NOTIFY_IDS else lane
                curs.execute("SELECT pg_notify(%s, %s)", (ROUTED_CHANNEL, payload))
        started: Sequence[StartedHead] = kwargs.get("started") or ()
        if started:
            curs.executemany(START_HEAD, started)
        outcomes: Sequence[DispatchOutcome] = kwargs.get("dispatches") or ()
        if outcomes:
            curs.executemany(INSERT_DISPATCH, outcomes)
        super()._insert_events(curs, stored_events, **kwargs)
