"""Read queries over job_heads: finding work, stale jobs and active duplicates."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import retry
from psycopg import sql

from jobstore.boundary import boundary, renew_connections
from jobstore.recorder import INSERT_DISPATCH, DispatchOutcome
from jobstore.settings import Settings

ACTIVE = "status NOT IN ('completed', 'failed', 'cancelled', 'quarantined')"
# A job set aside: its row in quarantined_jobs (seen once more if it was), its head out of
# every queue.
QUARANTINE = (
    "WITH q AS (INSERT INTO quarantined_jobs AS q (job_id, found_by, error, first_at, "
    "last_at) VALUES (%(id)s, %(by)s, %(error)s, %(now)s, %(now)s) ON CONFLICT (job_id) "
    "DO UPDATE SET last_at = EXCLUDED.last_at, seen = q.seen + 1 RETURNING seen), "
    "h AS (UPDATE job_heads SET status = 'quarantined' WHERE job_id = %(id)s) "
    "SELECT seen FROM q"
)
# What a lane holds: its runs (a batch's members share their leader's: schema/027), of
# jobs dispatched to it and not started yet (a child an Actions run planned into its
# matrix included: the run starts it), and of jobs running on it.
HELD = (
    "FROM job_heads h LEFT JOIN lane_batches b ON b.member = h.job_id "
    "AND b.member_attempt = h.attempt "
    "WHERE h.status IN ('dispatched', 'running') AND h.lane = ANY(%(lanes)s)"
)
RUNS = "count(DISTINCT coalesce(b.leader, h.job_id))"
IN_FLIGHT = f"SELECT {RUNS} AS n {HELD}"
IN_FLIGHT_BY_LANE = f"SELECT h.lane, {RUNS} AS n {HELD} GROUP BY h.lane"
PRIORITY_ORDER = "CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END"
QUEUE = f"WHERE status = 'routed' AND lane = %s ORDER BY {PRIORITY_ORDER}, turn_at LIMIT %s"
WAITING = (
    "SELECT job_id, lane, rule, job_type, parent_id, attempt, last_event_at FROM job_heads " + QUEUE
)


class Waiting(NamedTuple):
    """A routed job as its head says (enough to tell, without reading its events, whether
    the sweeper leaves it to its parent's run): `rule` None for heads older than 030."""

    job_id: UUID
    lane: str
    rule: str | None
    job_type: str
    parent_id: UUID | None
    attempt: int
    last_event_at: datetime


class Dispatching:
    """The right to dispatch one job (truthy if this process has it), and the lane locks
    taken with it."""

    def __init__(self, mine: bool, curs: Any) -> None:
        self.mine = mine
        self._curs = curs

    def __bool__(self) -> bool:
        return self.mine

    def held(self, lane: str) -> int:
        """How many jobs `lane` holds now (see IN_FLIGHT), under a lock on the lane kept
        until the dispatch ends: dispatchers in every process count and send one at a
        time, so together they never send past the lane's capacity."""
        self._curs.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"capacity:{lane}",)
        )
        self._curs.execute(IN_FLIGHT, {"lanes": [lane]})
        row = self._curs.fetchone()
        return int(row["n"]) if row else 0


@boundary
class Heads:
    """Queries the job_heads table through the store's connection pool."""

    def __init__(self, datastore: PostgresDatastore, events_table: str) -> None:
        self.datastore = datastore
        self.events_table = events_table

    def on_read_only(self) -> None:
        """Called by the boundary after a read-only error: the pool's sessions anew."""
        renew_connections(self.datastore.pool)

    @retry((InterfaceError, OperationalError), max_attempts=5, wait=0.1)
    def _rows(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[dict]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params)
            return list(curs.fetchall())

    def quarantine(self, job_id: UUID, found_by: str, error: str, now: datetime) -> bool:
        """Sets the job aside: its head leaves every queue, the row says who found it and
        why. True the first time."""
        rows = self._rows(
            QUARANTINE, {"id": job_id, "by": found_by, "error": error[:500], "now": now}
        )
        return bool(rows) and rows[0]["seen"] == 1

    def quarantined(self, limit: int = 100) -> list[dict]:
        """The jobs set aside, most recently seen first."""
        return self._rows(
            "SELECT q.job_id, h.job_type, h.repository, q.found_by, q.error, q.first_at, "
            "q.last_at, q.seen FROM quarantined_jobs q LEFT JOIN job_heads h USING (job_id) "
            "ORDER BY q.last_at DESC LIMIT %s",
            (limit,),
        )

    def active(self, job_ids: Sequence[UUID]) -> set[UUID]:
        """Those of `job_ids` that are not final."""
        if not job_ids:
            return set()
        rows = self._rows(
            f"SELECT job_id FROM job_heads WHERE {ACTIVE} AND job_id = ANY(%s)", (list(job_ids),)
        )
        return {row["job_id"] for row in rows}

    def completed_since(self, job_ids: Sequence[UUID], since: datetime) -> set[UUID]:
        """Those of `job_ids` that completed at or after `since` (a cooldown's start)."""
        if not job_ids:
            return set()
        rows = self._rows(
            "SELECT job_id FROM job_heads WHERE status = 'completed' AND last_event_at >= %s "
            "AND job_id = ANY(%s)",
            (since, list(job_ids)),
        )
        return {row["job_id"] for row in rows}

    def stored_events(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of these streams, in stream and version order: one round trip."""
        query = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(sql.Identifier(self.events_table))
        return [
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in self._rows(query, (list(ids),))
        ]

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

    def is_archived(self, job_id: UUID) -> bool:
        rows = self._rows("SELECT archived_at FROM job_heads WHERE job_id = %s", (job_id,))
        return bool(rows) and rows[0]["archived_at"] is not None

    def head_versions(self, ids: Sequence[UUID]) -> dict[UUID, int]:
        return {job_id: version for job_id, (version, _) in self.head_states(ids).items()}

    def head_states(self, ids: Sequence[UUID]) -> dict[UUID, tuple[int, str]]:
        rows = self._rows(
            "SELECT job_id, version, status FROM job_heads WHERE job_id = ANY(%s)", (list(ids),)
        )
        return {row["job_id"]: (row["version"], row["status"]) for row in rows}

    def _silent(self, status: str, limits: Mapping[str, float], now: datetime) -> list[UUID]:
        """Jobs in `status` whose last event is older than their lane's limit (seconds)."""
        found: list[UUID] = []
        for lane, limit in limits.items():
            rows = self._rows(
                "SELECT job_id FROM job_heads WHERE status = %s AND lane = %s "
                "AND last_event_at < %s::timestamptz - make_interval(secs => %s) "
                "ORDER BY last_event_at",
                (status, lane, now, limit),
            )
            found.extend(row["job_id"] for row in rows)
        return found

    @contextmanager
    def dispatching(self, job_id: UUID | str) -> Iterator[Dispatching]:
        """Truthy if this process may dispatch the job now: a transaction-level advisory
        lock held until the block ends, so two dispatchers never send the same job twice.
        Its `held(lane)` counts what a lane holds under the lane's lock, on the same
        connection (a waiter holds one connection, not two)."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 1)) AS mine",
                (f"dispatch:{job_id}",),
            )
            row = curs.fetchone()
            yield Dispatching(bool(row and row["mine"]), curs)

    def in_flight(self, lanes: Sequence[str]) -> dict[str, int]:
        """How many jobs each of `lanes` holds now (see IN_FLIGHT)."""
        rows = self._rows(IN_FLIGHT_BY_LANE, {"lanes": list(lanes)})
        return {lane: 0 for lane in lanes} | {r["lane"]: int(r["n"]) for r in rows}

    def stale_running(self, now: datetime, settings: Settings) -> list[UUID]:
        """Running jobs silent for longer than their lane's lease."""
        return self._silent("running", settings.leases, now)

    def due_retries(self, now: datetime) -> list[UUID]:
        rows = self._rows(
            "SELECT job_id FROM job_heads WHERE status = 'retry_scheduled' AND not_before <= %s "
            f"ORDER BY {PRIORITY_ORDER}, not_before",
            (now,),
        )
        return [row["job_id"] for row in rows]

    def recent_dispatches(self, since: datetime, per_lane: int) -> dict[str, list[bool]]:
        """Each lane's latest dispatch outcomes since `since` (True = taken), newest first."""
        rows = self._rows(
            "SELECT lane, ok FROM (SELECT lane, ok, row_number() OVER "
            "(PARTITION BY lane ORDER BY at DESC, id DESC) AS n FROM lane_dispatches "
            "WHERE at >= %s) AS r WHERE n <= %s ORDER BY lane, n",
            (since, per_lane),
        )
        recent: dict[str, list[bool]] = {}
        for row in rows:
            recent.setdefault(row["lane"], []).append(row["ok"])
        return recent

    def record_dispatch(self, outcome: DispatchOutcome) -> None:
        """A dispatch outcome without its event: the lane took the job and started it before
        Dispatched could be appended (lane health must still count it as taken)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(INSERT_DISPATCH, outcome)

    def rename_repository(self, old: str, new: str, at: datetime) -> int:
        """Jobs created before `at` on repository `old` (any case) show `new` in job_heads
        and capture_jobs; their events keep the name they were made with. Returns how many
        jobs moved."""
        rows = self._rows(
            "WITH h AS (UPDATE job_heads SET repository = %(new)s "
            "WHERE lower(repository) = %(old)s AND created_at <= %(at)s RETURNING 1), "
            "c AS (UPDATE capture_jobs SET repository = %(new)s "
            "WHERE lower(repository) = %(old)s AND created_at <= %(at)s RETURNING 1) "
            "SELECT (SELECT count(*) FROM h) AS n",
            {"old": old.lower(), "new": new, "at": at},
        )
        return int(rows[0]["n"])

    def prune_dispatches(self, before: datetime) -> int:
        """Forgets dispatch outcomes older than `before` (only lane health reads them; the
        jobs' own events keep every dispatch)."""
        rows = self._rows(
            "WITH gone AS (DELETE FROM lane_dispatches WHERE at < %s RETURNING 1) "
            "SELECT count(*) AS n FROM gone",
            (before,),
        )
        return int(rows[0]["n"])

    def dispatched_before(self, deadlines: Mapping[str, float], now: datetime) -> list[UUID]:
        """Dispatched jobs not started within their lane's start deadline."""
        return self._silent("dispatched", deadlines, now)

    def batched(
        self, member: UUID, member_attempt: int, leader: UUID, attempt: int, at: datetime
    ) -> None:
        """`member`'s attempt rides `leader`'s run (its attempt `attempt`)."""
        self._rows(
            "INSERT INTO lane_batches (member, member_attempt, leader, leader_attempt, at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (member, member_attempt) DO UPDATE SET "
            "leader = EXCLUDED.leader, leader_attempt = EXCLUDED.leader_attempt, at = EXCLUDED.at "
            "RETURNING member",
            (member, member_attempt, leader, attempt, at),
        )

    def batch_members(self, leader: UUID, attempt: int) -> list[tuple[UUID, int]]:
        """The jobs (and attempts) that ride `leader`'s run for its attempt `attempt`, in
        the order they were batched."""
        rows = self._rows(
            "SELECT member, member_attempt FROM lane_batches WHERE leader = %s "
            "AND leader_attempt = %s ORDER BY at, member",
            (leader, attempt),
        )
        return [(r["member"], r["member_attempt"]) for r in rows]

    def latest_batch_event(self, member: UUID, member_attempt: int) -> datetime | None:
        """When the run `member` rides last started or ended one of its jobs."""
        rows = self._rows(
            "SELECT max(h.last_event_at) AS at FROM lane_batches m "
            "JOIN lane_batches o ON o.leader = m.leader AND o.leader_attempt = m.leader_attempt "
            "JOIN job_heads h ON h.job_id IN (o.member, o.leader) "
            "AND h.status NOT IN ('routed', 'dispatched', 'queued') "
            "WHERE m.member = %s AND m.member_attempt = %s",
            (member, member_attempt),
        )
        return rows[0]["at"] if rows else None

    def prune_batches(self, before: datetime) -> None:
        self._rows(
            "WITH gone AS (DELETE FROM lane_batches WHERE at < %s RETURNING 1) "
            "SELECT count(*) AS n FROM gone",
            (before,),
        )

    def latest_child_event(self, parent_id: UUID) -> datetime | None:
        """When a leg last started or ended any child of `parent_id` (its run is draining
        them); a dispatch or its failure is not a leg's doing."""
        rows = self._rows(
            "SELECT max(last_event_at) AS at FROM job_heads WHERE parent_id = %s "
            "AND status NOT IN ('routed', 'dispatched', 'queued')",
            (parent_id,),
        )
        return rows[0]["at"] if rows else None

    def waiting(self, lanes: Sequence[str], limit: int) -> list[Waiting]:
        """Up to `limit` jobs routed to each of `lanes`, in their turns. Each lane's are
        read from the queue index in order (WAITING), not sorted whole."""
        found: list[Waiting] = []
        for lane in lanes:
            found += [Waiting(**row) for row in self._rows(WAITING, (lane, limit))]
        return found

    def waiting_count(self, lane: str, limit: int) -> int:
        """How many jobs wait routed to `lane`, counted up to `limit` (the queue index)."""
        return int(self._rows(WAITING_COUNT, (lane, limit))[0]["n"])

    def routed(self, lanes: Sequence[str]) -> list[UUID]:
        """Jobs routed to one of `lanes` and not yet dispatched, best first."""
        rows = self._rows(
            "SELECT job_id FROM job_heads WHERE status = 'routed' AND lane = ANY(%s) "
            f"ORDER BY {PRIORITY_ORDER}, turn_at",
            (list(lanes),),
        )
        return [row["job_id"] for row in rows]

    def with_prefix(self, prefix: str, limit: int) -> list[dict]:
        """Jobs whose id starts with `prefix` (lowercase hex and hyphens), at most `limit`."""
        return self._rows(
            "SELECT job_id, job_type, repository, status FROM job_heads "
            "WHERE job_id::text LIKE %s ORDER BY job_id LIMIT %s",
            (prefix + "%", limit),
        )

    def children(self, parent_id: UUID) -> dict[UUID, str]:
        """The status of each job whose parent is `parent_id`."""
        rows = self._rows("SELECT job_id, status FROM job_heads WHERE parent_id = %s", (parent_id,))
        return {row["job_id"]: row["status"] for row in rows}

    def unfinished_children(self, parent_id: UUID) -> bool:
        """Whether a child job of `parent_id` has yet to finish (an index of the unfinished
        ones: the cost does not grow with the children that ended)."""
        rows = self._rows(UNFINISHED_CHILDREN, (parent_id,))
        return bool(rows)

    def routed_children(self, parent_id: UUID, limit: int) -> list[UUID]:
        """Up to `limit` child jobs of `parent_id` waiting to be sent (routed), by id: read
        from the unfinished children's index, whatever number have ended."""
        rows = self._rows(ROUTED_CHILDREN, (parent_id, limit))
        return [row["job_id"] for row in rows]

    def count(self, status: str | None = None) -> int:
        if status is None:
            rows = self._rows("SELECT count(*) AS n FROM job_heads")
        else:
            rows = self._rows("SELECT count(*) AS n FROM job_heads WHERE status = %s", (status,))
        return int(rows[0]["n"])


# Use job_heads_unfinished_children (schema/029): the statuses spelled as its predicate.
UNFINISHED_CHILDREN = (
    "SELECT 1 FROM job_heads WHERE parent_id = %s "
    "AND status NOT IN ('completed', 'failed', 'cancelled') LIMIT 1"
)
# The queue's first `limit`, in WAITING's order so it reads the queue index (job_heads_turns):
# without the order a LIMIT invites a scan of every job that stops only after `limit` hits
WAITING_COUNT = f"SELECT count(*) AS n FROM (SELECT job_id FROM job_heads {QUEUE}) w"
ROUTED_CHILDREN = (
    "SELECT job_id FROM job_heads WHERE parent_id = %s AND status = 'routed' "
    "AND status NOT IN ('completed', 'failed', 'cancelled') ORDER BY job_id LIMIT %s"
)
