"""The read side: capture_jobs, updated exactly once per event (job_audit is a SQL view).

Every batch of view updates commits with its tracking position, under one advisory lock,
so catch-ups, a rebuild and a long-running projector can run at once without corrupting
anything: whoever holds the lock applies what is new, the others find nothing left.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment, get_topic
from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from jobstore import archive, projection, rollups
from jobstore.boundary import translated
from jobstore.db import eventsourcing_env
from jobstore.domain import Job
from jobstore.errors import describe
from jobstore.heads import QUARANTINE
from jobstore.prices import LanePrice
from jobstore.routing import LANES
from jobstore.store import JobStore

log = logging.getLogger(__name__)
NAME = "job_views"  # tracking table: job_views_tracking
LOCK = 0x76696577
BATCH = 5000
EVENTS = (
    Job.Queued,
    Job.Routed,
    Job.Dispatched,
    Job.DispatchFailed,
    Job.Started,
    Job.Progressed,
    Job.Failed,
    Job.RetryScheduled,
    Job.Completed,
    Job.Cancelled,
)
TOPICS = [get_topic(cls) for cls in EVENTS]
_cols = sql.SQL(", ").join(map(sql.Identifier, projection.COLUMNS))
_updates = sql.SQL(", ").join(
    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in projection.COLUMNS[1:]
)
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS capture_jobs_batch (LIKE capture_jobs) ON COMMIT DELETE ROWS"
)
COPY_STAGE = sql.SQL("COPY capture_jobs_batch ({}) FROM STDIN").format(_cols)
UPSERT = sql.SQL(
    "INSERT INTO capture_jobs ({0}) VALUES ({1}) ON CONFLICT (job_id) DO UPDATE SET {2}"
).format(_cols, sql.SQL(", ").join(sql.Placeholder() * len(projection.COLUMNS)), _updates)
UPSERT_JSON = sql.SQL(
    "INSERT INTO capture_jobs ({0}) SELECT {0} FROM jsonb_populate_recordset("
    "NULL::capture_jobs, %s) ON CONFLICT (job_id) DO UPDATE SET {1}"
).format(_cols, _updates)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _rollup_upsert(table: str, key: tuple[str, ...]) -> sql.Composed:
    """Adds records (jsonb) to a rollup table's rows, created at zero when new."""
    names = (*key, *rollups.COLUMNS)
    added = [
        sql.SQL("{0} = jobstore_add_counts({1}.{0}, EXCLUDED.{0})").format(
            sql.Identifier(c), sql.Identifier(table)
        )
        if c in rollups.HISTOGRAMS
        else sql.SQL("{0} = {1}.{0} + EXCLUDED.{0}").format(
            sql.Identifier(c), sql.Identifier(table)
        )
        for c in rollups.COLUMNS
    ]
    return sql.SQL(
        "INSERT INTO {0} ({1}) SELECT {1} FROM jsonb_populate_recordset(NULL::{0}, %s) "
        "ON CONFLICT ({2}) DO UPDATE SET {3}"
    ).format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(added),
    )


ADD_ROLLUPS = _rollup_upsert("job_rollups", ("bucket", "lane", "job_type"))
ADD_TOTALS = _rollup_upsert("job_totals", ("lane", "job_type"))
MERGE = sql.SQL(
    "INSERT INTO capture_jobs ({0}) SELECT {0} FROM capture_jobs_batch "
    "ON CONFLICT (job_id) DO UPDATE SET {1}"
).format(_cols, _updates)


# Renames and transfers of repositories, in order: the jobs made before each read under
# the new name (as JobStore.repository_moved did when it happened).
REPLAY_MOVES = """
DO $$
DECLARE m record;
BEGIN
    FOR m IN SELECT at, old_name, new_name FROM repository_events
             WHERE kind IN ('renamed', 'transferred') ORDER BY id
    LOOP
        UPDATE capture_jobs SET repository = m.new_name
        WHERE lower(repository) = m.old_name AND created_at <= m.at;
    END LOOP;
END $$
"""


class JobViews(PostgresTrackingRecorder):
    """The view tables and their tracking position in the job store's event log."""

    shared = False  # on the job store's connections: closing leaves them to the store

    def close(self) -> None:
        if not self.shared:
            self.datastore.close()

    def position(self) -> int:
        return self.max_tracking_id(JobStore.name) or 0

    def advance(self, store: JobStore, limit: int = BATCH) -> int:
        """Applies up to `limit` new events in one transaction; returns how many."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            return self._advance(curs, store, limit)

    def _advance(self, curs: Cursor, store: JobStore, limit: int) -> int:
        position = self._max_tracking_id(JobStore.name, curs) or 0
        notifications = store.recorder.select_notifications(
            start=position, limit=limit, topics=TOPICS, inclusive_of_start=False
        )
        if not notifications:
            return 0
        ids = list({n.originator_id for n in notifications})
        curs.execute("SELECT job_id FROM quarantined_jobs WHERE job_id = ANY(%s)", (ids,))
        aside: dict[UUID, str] = {row["job_id"]: "" for row in curs.fetchall()}
        events = []
        for notification in notifications:
            if notification.originator_id in aside:
                continue  # a job set aside: none of its events
            try:
                events.append(store.mapper.to_domain_event(notification))
            except Exception as exc:  # a record no load survives: set aside, the views go on
                aside[notification.originator_id] = describe(exc)
        self._set_aside(curs, aside)
        self._fold(curs, events)
        self._insert_tracking(curs, Tracking(JobStore.name, notifications[-1].id))
        return len(notifications)

    def apply_one(self, event: Any, tracking: Tracking) -> None:
        """The long-running projector's path: one event, skipped if a catch-up had it."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            if (self._max_tracking_id(JobStore.name, curs) or 0) >= tracking.notification_id:
                return
            self._fold(curs, [event])
            self._insert_tracking(curs, tracking)

    @translated
    def rebuild(self, store: JobStore, batch: int = BATCH) -> int:
        """Empties the views and replays the whole log, in one transaction."""
        total = 0
        with self.datastore.transaction(commit=True) as curs:
            self._reset(curs)
            total += self._replay_archive(curs, store)
            while count := self._advance(curs, store, batch):
                total += count
            curs.execute(REPLAY_MOVES)
        return total

    def _replay_archive(self, curs: Cursor, store: JobStore) -> int:
        """Folds the archived jobs' events, chunk by chunk (before the live log: a job is
        wholly in one or the other, and what the rollups add up does not depend on order)."""
        total = 0
        for chunk in archive.chunks(curs):
            events, aside = [], {}
            for _, stored in chunk:
                if stored.topic in TOPICS and stored.originator_id not in aside:
                    try:
                        events.append(store.mapper.to_domain_event(stored))
                    except Exception as exc:  # as in the live log: that job aside
                        aside[stored.originator_id] = describe(exc)
            self._set_aside(curs, aside)
            self._fold(curs, [e for e in events if e.originator_id not in aside])
            total += len(events)
        return total

    def reset(self) -> None:
        """Empties the views and forgets the position (the next catch-up replays the live
        log; `rebuild` also replays the archive)."""
        with self.datastore.transaction(commit=True) as curs:
            self._reset(curs)

    def _reset(self, curs: Cursor) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        curs.execute("TRUNCATE capture_jobs, job_rollups, job_totals")
        curs.execute(
            sql.SQL("DELETE FROM {} WHERE application_name = %s").format(
                sql.Identifier(self.tracking_table_name)
            ),
            (JobStore.name,),
        )

    def _set_aside(self, curs: Cursor, aside: dict[UUID, str]) -> None:
        """Quarantines the jobs newly found unreadable (those with an error)."""
        for job_id, error in aside.items():
            if error:
                log.error("views: job %s set aside, its events cannot be read: %s", job_id, error)
                curs.execute(
                    QUARANTINE,
                    {"id": job_id, "by": "views", "error": error, "now": datetime.now(UTC)},
                )

    def _fold(self, curs: Cursor, events: Sequence[Any]) -> None:
        ids = list({e.originator_id for e in events if not isinstance(e, Job.Queued)})
        rows: dict[Any, dict] = {}
        if ids:
            curs.execute("SELECT * FROM capture_jobs WHERE job_id = ANY(%s)", (ids,))
            rows = {row["job_id"]: row for row in curs.fetchall()}
        aside: dict[UUID, str] = {}
        counted: dict[UUID, rollups.Deltas] = {}
        for event in events:
            if event.originator_id in aside:
                continue
            before = rows.get(event.originator_id)
            try:
                after = projection.apply(before, event)
                counted.setdefault(event.originator_id, rollups.Deltas()).add(before, after, event)
            except Exception as exc:  # events that make no job: that job aside, the rest go on
                aside[event.originator_id] = describe(exc)
                rows.pop(event.originator_id, None)
                counted.pop(event.originator_id, None)
                continue
            rows[event.originator_id] = after
        self._set_aside(curs, aside)
        if not rows:
            return
        self._count(curs, counted.values())
        if len(rows) <= 50:  # a few rows: one statement beats staging
            curs.execute(UPSERT_JSON, (Jsonb(list(rows.values()), dumps=_dumps),))
            return
        values = [[row[c] for c in projection.COLUMNS] for row in rows.values()]
        curs.execute(STAGE)
        with curs.copy(COPY_STAGE) as copy:
            for value in values:
                copy.write_row(value)
        curs.execute(MERGE)
        curs.execute("DELETE FROM capture_jobs_batch")  # a rebuild stages many in one commit

    @staticmethod
    def _count(curs: Cursor, deltas: Any) -> None:
        """Adds what the batch's events count to job_rollups and job_totals."""
        batch = rollups.Deltas.merged(deltas)
        if records := batch.records():
            curs.execute(ADD_ROLLUPS, (Jsonb(records, dumps=_dumps),))
        if totals := batch.totals():
            curs.execute(ADD_TOTALS, (Jsonb(totals, dumps=_dumps),))

    @translated
    def set_prices(self, prices: dict[str, LanePrice]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for lane in LANES:
                p = prices.get(lane, LanePrice())
                curs.execute(
                    "INSERT INTO lane_prices (lane, per_run, per_step, per_minute, free_minutes) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lane) DO UPDATE SET "
                    "per_run = EXCLUDED.per_run, per_step = EXCLUDED.per_step, "
                    "per_minute = EXCLUDED.per_minute, free_minutes = EXCLUDED.free_minutes",
                    (lane, p.per_run, p.per_step, p.per_minute, p.free_minutes),
                )


@translated
def open_views(where: str | dict[str, str] | JobStore) -> JobViews:
    """The view recorder on the job store's database: on the store's own connections, or
    one of its own (a URL, or eventsourcing's settings for it) made when first used."""
    if isinstance(where, JobStore):
        views = JobViews(where.recorder.datastore, tracking_table_name=f"{NAME}_tracking")
        views.shared = True
        return views
    env = eventsourcing_env(where, pool_size=1) if isinstance(where, str) else where
    factory = PostgresFactory(Environment(NAME, {**env, "POSTGRES_POOL_SIZE": "1"}))
    return factory.tracking_recorder(JobViews)


@translated
def catch_up(store: JobStore, views: JobViews, batch: int = BATCH) -> int:
    """Applies every event recorded so far; returns how many. Safe to run concurrently."""
    total = 0
    while count := views.advance(store, batch):
        total += count
    return total


class JobViewsProjection(Projection[JobViews]):
    """The projection a ProjectionRunner drives, event by event, for low lag."""

    name = NAME
    topics = tuple(TOPICS)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply_one(domain_event, tracking)


def project_forever(where: str | dict[str, str], stop: threading.Event, poll: float = 0.5) -> None:
    """Runs the projector until `stop` is set.

    A ProjectionRunner follows LISTEN/NOTIFY for low lag; a catch-up every `poll` seconds
    covers what it misses (a dropped LISTEN connection stalls it silently), and a runner
    that dies is restarted.
    """
    env = eventsourcing_env(where) if isinstance(where, str) else where
    store = JobStore({**env, "CREATE_TABLE": "n"})
    views = open_views(env)
    try:
        while not stop.is_set():
            runner = ProjectionRunner(
                application_class=JobStore,
                projection_class=JobViewsProjection,
                view_class=JobViews,
                env={**env, "POSTGRES_POOL_SIZE": "2"},
            )
            try:
                with runner:
                    while not stop.is_set():
                        catch_up(store, views)
                        runner.run_forever(timeout=poll)
                        if runner.is_interrupted.is_set() and not stop.is_set():
                            break
            # Any failure of the runner (its threads re-raise here): log it and start anew.
            except Exception as exc:
                log.warning("projection runner stopped (%s); restarting", exc)
                stop.wait(poll)
    finally:
        views.close()
        store.close()
