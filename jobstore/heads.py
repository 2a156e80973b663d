"""Read queries over job_heads: finding work, stale jobs and active duplicates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from jobstore.config import Settings

ACTIVE = "status NOT IN ('completed', 'failed', 'cancelled')"
PRIORITY_ORDER = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"


class Heads:
    """Queries the job_heads table through the store's connection pool."""

    def __init__(self, datastore: PostgresDatastore, events_table: str) -> None:
        self.datastore = datastore
        self.events_table = events_table

    def _rows(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[dict]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params)
            return list(curs.fetchall())

    def active(self, job_ids: Sequence[UUID]) -> set[UUID]:
        """Those of `job_ids` that are not final."""
        rows = self._rows(
            f"SELECT job_id FROM job_heads WHERE {ACTIVE} AND job_id = ANY(%s)", (list(job_ids),)
        )
        return {row["job_id"] for row in rows}

    def latest_events(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """The last stored event of each of these streams (those that exist)."""
        query = sql.SQL(
            "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
            "FROM {} WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version DESC"
        ).format(sql.Identifier(self.events_table))
        return [
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in self._rows(query, (list(ids),))
        ]

    def head_versions(self, ids: Sequence[UUID]) -> dict[UUID, int]:
        rows = self._rows(
            "SELECT job_id, version FROM job_heads WHERE job_id = ANY(%s)", (list(ids),)
        )
        return {row["job_id"]: row["version"] for row in rows}

    def claimable(self, lane: str, limit: int) -> list[UUID]:
        """Jobs routed or dispatched to `lane`, best first."""
        rows = self._rows(
            "SELECT job_id FROM job_heads WHERE status IN ('routed', 'dispatched') AND lane = %s "
            f"ORDER BY {PRIORITY_ORDER}, created_at LIMIT %s",
            (lane, limit),
        )
        return [row["job_id"] for row in rows]

    def stale_running(self, now: datetime, settings: Settings) -> list[UUID]:
        """Running jobs silent for longer than their lane's lease."""
        found: list[UUID] = []
        for lane, lease in settings.leases.items():
            rows = self._rows(
                "SELECT job_id FROM job_heads WHERE status = 'running' AND lane = %s "
                "AND last_event_at < %s::timestamptz - make_interval(secs => %s) "
                "ORDER BY last_event_at",
                (lane, now, lease),
            )
            found.extend(row["job_id"] for row in rows)
        return found

    def due_retries(self, now: datetime) -> list[UUID]:
        rows = self._rows(
            "SELECT job_id FROM job_heads WHERE status = 'retry_scheduled' AND not_before <= %s "
            f"ORDER BY {PRIORITY_ORDER}, not_before",
            (now,),
        )
        return [row["job_id"] for row in rows]

    def count(self, status: str | None = None) -> int:
        if status is None:
            rows = self._rows("SELECT count(*) AS n FROM job_heads")
        else:
            rows = self._rows("SELECT count(*) AS n FROM job_heads WHERE status = %s", (status,))
        return int(rows[0]["n"])
