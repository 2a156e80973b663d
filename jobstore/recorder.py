"""The event recorder: eventsourcing's PostgreSQL recorder plus job_heads in the same commit."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Connection
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

ROUTED_CHANNEL = "jobstore_routed"
NOTIFY_IDS = 50  # at most this many job ids in one notification (payloads < 8000 bytes)

INSERT_DISPATCH = (
    "INSERT INTO lane_dispatches (lane, job_id, ok, error, at) VALUES (%s, %s, %s, %s, %s)"
)


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
    share: str  # whose turn it shares (schema/025): the workspace, else the owner
    rule: str | None  # the routing rule (schema/030)


PRIORITY_ORDER = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"
# The waiting jobs of a lane (or the one named), best first, that no other transaction
# holds, locked until this one ends; and every event of each, to start them from.
PICK = """
WITH picked AS (
    SELECT job_id FROM job_heads
    WHERE status IN ('routed', 'dispatched') AND lane = %(lane)s
      AND (%(job_id)s::uuid IS NULL OR job_id = %(job_id)s::uuid)
    ORDER BY {order}, turn_at
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
SELECT e.originator_id, e.originator_version, e.topic, e.state
FROM {events} e JOIN picked p ON e.originator_id = p.job_id
ORDER BY e.originator_id, e.originator_version
"""
RECORD = "SELECT jobstore_record(%s, %s, %s, %s)"


def routed_notifications(heads: Sequence[Head]) -> list[str]:
    """What waiting workers are told of routed jobs: per lane, "lane id:version:attempt
    ..." (hints; more than NOTIFY_IDS jobs name just the lane, and workers look)."""
    routed: dict[str, list[str]] = {}
    for head in heads:
        if head.status == "routed" and head.lane:
            routed.setdefault(head.lane, []).append(f"{head.job_id}:{head.version}:{head.attempt}")
    return [
        " ".join([lane, *ids]) if len(ids) <= NOTIFY_IDS else lane
        for lane, ids in sorted(routed.items())
    ]


def as_json(rows: list[dict[str, Any]]) -> Jsonb:
    return Jsonb(rows, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


# What a claim writes, made from the events it read: (new stored events, their heads).
Start = Callable[[list[StoredEvent]], tuple[list[StoredEvent], list["Head"]]]


class JobRecorder(PostgresApplicationRecorder):
    """Writes the `heads` (and dispatch outcomes) passed to `save()` with the events, in one
    transaction.

    If the events lose a version race the transaction rolls back, heads included.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.datastore.lock_timeout:  # "SET LOCAL lock_timeout = 0" sets the default
            self.lock_table_statements = self.lock_table_statements[1:]
        self.pick_statement = SQL(PICK).format(
            order=SQL(PRIORITY_ORDER),
            events=Identifier(self.datastore.schema, self.events_table_name),
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The events, the `heads` and the dispatch outcomes given, in one statement that
        is its own transaction (jobstore_record, schema/011): one round trip."""
        if not stored_events:
            return None
        with self.datastore.get_connection() as conn:
            return self._record(conn, stored_events, kwargs)

    def _record(
        self, conn: Connection, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> list[int]:
        heads: Sequence[Head] = kwargs.get("heads") or ()
        outcomes: Sequence[DispatchOutcome] = kwargs.get("dispatches") or ()
        events = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        rows = conn.execute(
            RECORD,
            (
                events,
                as_json([h._asdict() for h in heads]) if heads else None,
                as_json([o._asdict() for o in outcomes]) if outcomes else None,
                routed_notifications(heads),
            ),
            prepare=True,
        ).fetchall()
        return [row["jobstore_record"] for row in rows]

    @retry((InterfaceError, OperationalError), max_attempts=5, wait=0.1)
    def claim(self, lane: str, limit: int, job_id: UUID | None, start: Start) -> list[StoredEvent]:
        """One transaction, two round trips: picks up to `limit` waiting jobs of `lane`
        (or the one named), locking their heads so concurrent claimers take others, reads
        their events, and records what `start` makes of them. Returns the events it read
        (none: nothing was waiting). Started events are appended at the next version, so
        the version check still decides if anything raced past the lock."""
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.cursor() as curs:
                conn.execute("BEGIN")
                curs.execute(
                    self.pick_statement,
                    {"lane": lane, "job_id": job_id, "limit": limit},
                    prepare=True,
                )
                pipeline.sync()
                rows = curs.fetchall()
            read = [
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in rows
            ]
            stored, heads = start(read) if read else ([], [])
            try:
                with conn.pipeline():
                    if stored:
                        self._record(conn, stored, {"heads": heads})
                    conn.execute("COMMIT")
            except psycopg.Error:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise
            return read
