"""Database access: which PostgreSQL to use, plain connections, and schema migrations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

import psycopg
from psycopg import conninfo

from jobstore.embedded import Server
from jobstore.errors import ConfigError, DatabaseUnavailable
from jobstore.settings import Settings, load

if TYPE_CHECKING:
    from jobstore.store import JobStore

MIGRATIONS_TABLE = "schema_migrations"
# One advisory lock key for migrations, so concurrent first runs apply each file once.
MIGRATION_LOCK = 0x6A6F6273
SCHEMA_FILE = re.compile(r"[0-9]{3}_.+\.sql")


def database_url(settings: Settings) -> str:
    """DATABASE_URL if set, else the URL of the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url
    if settings.on_github_actions:  # a runner's own server would vanish with the run
        raise ConfigError(
            "DATABASE_URL is not set: on GitHub Actions the job store is a database the "
            "runners reach (see docs/DEPLOY.md), never an embedded one"
        )
    return Server(settings.home).start()


def eventsourcing_env(url: str, *, pool_size: int = 5, pool_wait: float = 10) -> dict[str, str]:
    """The eventsourcing settings for a PostgreSQL URL (it wants the parts, not a URL)."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from None
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(parts.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(parts.get("host") or "localhost"),
        "POSTGRES_PORT": str(parts.get("port") or "5432"),
        "POSTGRES_USER": str(parts.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(parts.get("password") or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(pool_wait))),
        # Check a pooled connection before use: a restart or a terminated backend (failover,
        # pooler restart, idle reaper) then costs a reconnect, not an error.
        "POSTGRES_PRE_PING": "y",
        # Leave the shared insert function off: unsafe with several apps in one schema.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A plain psycopg connection; connection failures become DatabaseUnavailable."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {first}") from None
    with conn:
        yield conn


def reachable(url: str) -> bool:
    """Whether the server at `url` accepts a connection now."""
    try:
        with connect(url):
            return True
    except DatabaseUnavailable:
        return False


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
    done = {row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    return [f for f in schema_files() if f.name not in done]


def is_current(conn: psycopg.Connection) -> bool:
    """Whether every table and schema file is in place. This is a read-only operation."""
    try:
        tables = conn.execute(
            "SELECT to_regclass('jobs_events'), to_regclass('job_views_tracking'), "
            f"to_regclass('{MIGRATIONS_TABLE}')"
        ).fetchone()
        if tables is None or None in tables:
            return False
        done = {row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc}") from None
    return all(f.name in done for f in schema_files())


def migrate(url: str) -> list[str]:
    """Applies pending schema files in order, each in its own transaction; returns their names.

    The event and tracking tables are eventsourcing's own: it creates them first, under the
    same lock, so schema files may refer to them.
    """
    from jobstore.store import JobStore

    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        if is_current(conn):  # nothing to do: no lock, no DDL (a read replica is fine)
            return applied
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            exists = conn.execute("SELECT to_regclass('jobs_events')").fetchone()
            if exists is None or exists[0] is None:
                JobStore(eventsourcing_env(url, pool_size=1)).close()
                applied.append("jobs_events (eventsourcing)")
            exists = conn.execute("SELECT to_regclass('job_views_tracking')").fetchone()
            if exists is None or exists[0] is None:
                from jobstore.views import open_views

                open_views(eventsourcing_env(url, pool_size=1)).close()
                applied.append("job_views_tracking (eventsourcing)")
            for path in pending_migrations(conn):
                try:
                    with conn.transaction():
                        conn.execute(path.read_text())
                        conn.execute(
                            f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (path.name,)
                        )
                except psycopg.Error as exc:
                    first = str(exc).strip().splitlines()[0]
                    raise DatabaseUnavailable(f"migration {path.name} failed: {first}") from None
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


def open_store(settings: Settings | None = None, url: str | None = None) -> JobStore:
    """The job store on DATABASE_URL or the embedded server, migrated and ready."""
    from jobstore.store import JobStore

    settings = settings or load()
    url = url or database_url(settings)
    migrate(url)
    env = {
        **eventsourcing_env(url, pool_size=settings.pool_size, pool_wait=settings.pool_wait),
        "CREATE_TABLE": "n",
    }
    return JobStore(env, settings)
