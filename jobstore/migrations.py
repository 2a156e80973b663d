"""Schema migrations: eventsourcing's own tables, then the numbered files of schema/
(shipped as the package data jobstore.schema), each in a transaction with its row in
schema_migrations."""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment

from jobstore.db import connect, eventsourcing_env
from jobstore.errors import DatabaseUnavailable, first_line

MIGRATIONS_TABLE = "schema_migrations"
# One advisory lock key for migrations, so concurrent first runs apply each file once.
MIGRATION_LOCK = 0x6A6F6273
SCHEMA_FILE = re.compile(r"[0-9]{3}_.+\.sql")
EVENTS_APP = "jobs"  # JobStore.name: its events table is jobs_events
VIEWS_APP = "job_views"  # the views' tracking table: job_views_tracking
RECORDER = "jobstore.recorder:JobRecorder"


def schema_files() -> list[Traversable]:
    """The numbered .sql files, in order (package data of jobstore.schema)."""
    files = [f for f in resources.files("jobstore.schema").iterdir() if SCHEMA_FILE.match(f.name)]
    if not files:
        raise DatabaseUnavailable("schema files not found in the jobstore.schema package")
    return sorted(files, key=lambda f: f.name)


def pending_migrations(conn: psycopg.Connection) -> list[Traversable]:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["name"] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    return [f for f in schema_files() if f.name not in done]


def is_current(conn: psycopg.Connection) -> bool:
    """Whether every table and schema file is in place. This is a read-only operation."""
    try:
        tables = conn.execute(
            "SELECT to_regclass('jobs_events') AS a, to_regclass('job_views_tracking') AS b, "
            f"to_regclass('{MIGRATIONS_TABLE}') AS c"
        ).fetchone()
        if tables is None or None in tables.values():
            return False
        done = {row["name"] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from None
    return all(f.name in done for f in schema_files())


def _missing(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) AS found", (table,)).fetchone()
    return row is None or row["found"] is None


def _eventsourcing_tables(conn: psycopg.Connection, url: str) -> list[str]:
    """eventsourcing creates its own tables (their DDL changes between its versions)."""
    made = []
    env = {**eventsourcing_env(url, pool_size=1), "APPLICATION_RECORDER_TOPIC": RECORDER}
    if _missing(conn, f"{EVENTS_APP}_events"):
        factory = PostgresFactory(Environment(EVENTS_APP, env))
        factory.application_recorder()
        factory.close()
        made.append(f"{EVENTS_APP}_events (eventsourcing)")
    if _missing(conn, f"{VIEWS_APP}_tracking"):
        factory = PostgresFactory(Environment(VIEWS_APP, env))
        factory.tracking_recorder()
        factory.close()
        made.append(f"{VIEWS_APP}_tracking (eventsourcing)")
    return made


def migrate(url: str) -> list[str]:
    """Applies pending schema files in order, each in its own transaction; returns their names.

    The event and tracking tables are eventsourcing's own: it creates them first, under the
    same lock, so schema files may refer to them.
    """
    applied: list[str] = []
    with connect(url, autocommit=True, component="migrate") as conn:
        if is_current(conn):  # nothing to do: no lock, no DDL (a read replica is fine)
            return applied
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            applied += _eventsourcing_tables(conn, url)
            for path in pending_migrations(conn):
                try:
                    with conn.transaction():
                        conn.execute(path.read_text())
                        conn.execute(
                            f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (path.name,)
                        )
                except psycopg.Error as exc:
                    raise DatabaseUnavailable(
                        f"migration {path.name} failed: {first_line(exc)}"
                    ) from None
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied
