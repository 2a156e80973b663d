"""Database access: which PostgreSQL to use, and the one component every holder of a
connection is given (`Database`). The only module that opens PostgreSQL connections
(eventsourcing's own pools aside)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from jobstore.embedded import Server
from jobstore.errors import (
    ConfigError,
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
    first_line,
)
from jobstore.settings import Settings, application_name

T = TypeVar("T")
log = logging.getLogger(__name__)


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
        # One connection kept; more made while work overlaps, up to `pool_size`.
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": str(max(0, pool_size - 1)),
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(pool_wait))),
        # No check before each use (a round trip every time): a connection found dead (a
        # restart, failover, idle reaper) fails its statement, is dropped by the pool and
        # the statement retried on another (eventsourcing's and our own retries).
        "POSTGRES_PRE_PING": "n",
        # Leave the shared insert function off: unsafe with several apps in one schema.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }


@contextmanager
def connect(
    url: str, *, autocommit: bool = False, component: str = "migrate"
) -> Iterator[psycopg.Connection]:
    """A connection of its own for the block (migrations); failures: DatabaseUnavailable."""
    conn = open_connection(url, component)
    conn.autocommit = autocommit
    with conn:
        yield conn


def open_connection(url: str, component: str, timeout: float = 10) -> psycopg.Connection:
    """A connection of its own, in autocommit mode, for a component that holds a session
    (a LISTEN); the caller closes it. Failures become DatabaseUnavailable."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, round(timeout)),
            row_factory=dict_row,
            application_name=application_name(component),
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {first_line(exc)}") from None


def translate(exc: BaseException, component: str) -> DatabaseUnavailable | DatabaseRefused:
    """The job store's error for a driver error met by `component`."""
    line = first_line(exc)[:300]
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return DatabaseReadOnly(f"{component}: the database is read-only: {line}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout):
        return DatabaseUnavailable(f"{component}: database unavailable: {line}")
    return DatabaseRefused(f"{component}: {line}")


def is_stale_session(conn: psycopg.Connection | None, exc: BaseException) -> bool:
    """Whether a connection should be dropped after `exc`: it is broken, or it was made
    while the database was read-only (a session keeps the read-only default it connected
    with, so after a read-only spell it would refuse writes for ever)."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    return isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)


class Dropped(Exception):
    """A statement met a broken (or read-only) session, which was dropped: trying again on
    another may succeed."""

    def __init__(self, cause: psycopg.Error) -> None:
        self.cause = cause
        super().__init__(str(cause))


class Database:
    """One component's way to PostgreSQL, modelled on eventsourcing's PostgresDatastore:
    one owner of the connections (a pool of its own, whose connections carry the
    component's `application_name`, or the pool of the job store it is lent), one unit of
    work per transaction, driver errors translated (DatabaseUnavailable, DatabaseReadOnly,
    DatabaseRefused), a broken or read-only session dropped, and what is retryable
    retried: a deadlock or serialisation failure at once, a lost connection once, on a
    new one. Thread-safe: each unit of work has a connection of its own while it runs.

    Connections are in autocommit mode with dict rows: a single statement is its own
    transaction (one round trip), `transaction()` and `run()` group statements."""

    def __init__(
        self,
        url: str,
        component: str,
        *,
        pool: ConnectionPool | None = None,
        size: int = 2,
        timeout: float = 10.0,
        attempts: int = 5,
    ) -> None:
        self.url = url
        self.component = component
        self.timeout = timeout
        self.attempts = attempts
        self._lent = pool is not None
        self._pool = pool
        self._size = size
        self._lock = threading.Lock()

    def lend(self, component: str) -> Database:
        """Another component drawing on this one's connections (named after it in errors)."""
        return Database(
            self.url, component, pool=self.pool, timeout=self.timeout, attempts=self.attempts
        )

    @property
    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                name = application_name(self.component)

                def configure(conn: psycopg.Connection) -> None:
                    conn.autocommit = True

                self._pool = ConnectionPool(
                    self.url,
                    min_size=0,
                    max_size=self._size,
                    kwargs={"row_factory": dict_row, "application_name": name},
                    configure=configure,
                    timeout=self.timeout,
                    open=False,
                    name=name,
                )
            self._pool.open()
            return self._pool

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A connection for as long as the block runs (autocommit: each statement commits).
        A stale one is dropped rather than given back."""
        try:
            with self.pool.connection(timeout=timeout) as conn:
                try:
                    yield conn
                except psycopg.Error as exc:
                    if is_stale_session(conn, exc):
                        self._drop(conn, exc)
                        raise Dropped(exc) from exc
                    raise
        except Dropped as dropped:
            raise translate(dropped.cause, self.component) from dropped
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, self.component) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One unit of work: the block's statements commit together, or none do."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def run(self, work: Callable[[psycopg.Connection], T], durable: bool = True) -> T:
        """`work(conn)` in one transaction, retried after a deadlock or serialisation
        failure (at once), a lost connection (once, on a new one) or a read-only refusal
        (see `_sessions`). `work` must be safe to run again: what it wrote was rolled back.

        Its statements are pipelined with BEGIN and COMMIT: one round trip when `work`
        reads no result on the way. Not `durable`, the commit does not wait for the disk:
        for rows that can be fetched again (a crash may lose the last fraction of a
        second of them), which the next durable commit on this server makes durable too
        (the log is written in order): a job's ending event, after its captured rows."""
        lost = conflicts = 0
        for _ in self._sessions():
            try:
                with self.connection() as conn:
                    return self._unit(conn, work, durable)
            except DatabaseReadOnly:
                continue
            except DatabaseUnavailable as exc:
                if isinstance(exc.__context__, psycopg.errors.TransactionRollback):
                    conflicts += 1  # a deadlock or serialisation failure: its turn comes
                    if conflicts < self.attempts:
                        continue
                    raise DatabaseUnavailable(
                        f"{self.component}: kept conflicting with other writers"
                    ) from None
                if lost:
                    raise
                lost += 1  # a lost connection: once more, on a new one
        with self.connection() as conn:  # the last try: its refusal is the answer
            return self._unit(conn, work, durable)

    @staticmethod
    def _unit(
        conn: psycopg.Connection, work: Callable[[psycopg.Connection], T], durable: bool
    ) -> T:
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                if not durable:
                    conn.execute("SET LOCAL synchronous_commit TO OFF")
                result = work(conn)
                conn.execute("COMMIT")
            return result
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise

    def _sessions(self) -> range:
        """A read-only refusal drops its session, which may have been made during a
        read-only spell that is over: the pool's other sessions may be such too, so a
        unit of work refused as read-only is tried on up to as many sessions as the pool
        holds; the database is read-only when a new one refuses too."""
        return range(self.pool.max_size + self.attempts)

    def rows(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        """The rows of one statement (its own transaction); a query that met a dead
        connection (a restart, a failover) is asked again on another."""
        return self._once_more(lambda conn: conn.execute(query, params).fetchall(), True)

    def one(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> dict | None:
        return self._once_more(lambda conn: conn.execute(query, params).fetchone(), True)

    def execute(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Runs one statement; returns how many rows it changed."""
        return self._once_more(lambda conn: conn.execute(query, params).rowcount)

    def _once_more(
        self,
        statement: Callable[[psycopg.Connection], T],
        reading: bool = False,
        timeout: float | None = None,
    ) -> T:
        """One statement; refused as read-only (nothing was written), or `reading` and
        met with a dead pooled connection, again on another session (see `_sessions`)."""
        for _ in self._sessions():
            try:
                with self.connection(timeout) as conn:
                    return statement(conn)
            except DatabaseReadOnly:
                continue
            except DatabaseUnavailable as exc:
                if not (reading and isinstance(exc.__cause__, Dropped)):
                    raise
        with self.connection(timeout) as conn:
            return statement(conn)

    def ping(self, timeout: float) -> None:
        """Raises DatabaseUnavailable unless the database answers within `timeout` seconds."""
        started = time.monotonic()
        self._once_more(lambda conn: conn.execute("SELECT 1"), True, timeout)
        log.debug("%s: ping in %.1f ms", self.component, 1000 * (time.monotonic() - started))

    @staticmethod
    def _drop(conn: psycopg.Connection, exc: BaseException) -> None:
        """Closes a broken or read-only session; the pool makes a new one when needed (not
        at once: one made during a read-only spell would be read-only too)."""
        conn.close()

    @staticmethod
    def reachable(url: str) -> bool:
        """Whether the server at `url` accepts a connection now."""
        try:
            open_connection(url, "ping", timeout=5).close()
        except DatabaseUnavailable:
            return False
        return True

    def close(self) -> None:
        """Closes the connections it owns (a lent pool stays with its owner)."""
        if self._pool is not None and not self._lent:
            self._pool.close()
