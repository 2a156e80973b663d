"""API budgets shared by every worker, lane and machine: per credential and resource, what
the API last said is left and when it resets, and the points reserved by requests in
flight. Admission reserves the planned cost of the next request, so two workers never both
spend the last points; a per-minute pace keeps them under secondary limits.

Credentials are named by a bucket key and a label (an installation, a user, a token's
fingerprint), never by the token. `PostgresBudgets` is the shared ledger (api_budgets,
api_reservations); `MemoryBudgets` is the same in one process.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from jobstore.boundary import is_stale_session
from jobstore.errors import DatabaseUnavailable
from jobstore.settings import application_name

RESERVATION = timedelta(minutes=10)  # what a crashed worker reserved expires after this
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Observed:
    """What one response's headers said of its credential's budget."""

    limit: int
    remaining: int
    reset_at: datetime

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Observed | None:
        try:
            return cls(
                int(headers["x-ratelimit-limit"]),
                int(headers["x-ratelimit-remaining"]),
                datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), tz=UTC),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class Admission:
    """A request let through (`reservation` holds its points), or refused: `until` when
    the minute's pace allows it, `reset_at` when the hour's budget is back."""

    reservation: str | None
    headroom: int = 0
    until: datetime | None = None  # refused for the minute's pace
    reset_at: datetime | None = None  # refused for the hour's budget

    @property
    def admitted(self) -> bool:
        return self.reservation is not None


class Budgets(Protocol):
    def admit(
        self,
        credential: str,
        resource: str,
        cost: int,
        now: datetime,
        *,
        keep: int = 0,
        per_minute: int | None = None,
        label: str = "",
    ) -> Admission: ...

    def observe(
        self,
        credential: str,
        resource: str,
        seen: Observed | None,
        reservation: str | None,
        now: datetime,
    ) -> None: ...

    def headroom(self, credential: str, resource: str, now: datetime) -> int | None: ...


DEFAULT_LIMIT = 5000  # before the API has said: GitHub's hourly budget for a token


def decide(
    row: dict[str, Any], reserved: int, cost: int, now: datetime, keep: int, per_minute: int | None
) -> tuple[Admission, dict[str, Any]]:
    """The admission rule over one ledger row (pure): the row as it should be stored."""
    row = dict(row)
    if row["reset_at"] is not None and row["reset_at"] <= now:  # a new hour
        row["remaining"], row["reset_at"] = row["limit_points"], None
    remaining = row["limit_points"] if row["remaining"] is None else row["remaining"]
    headroom = remaining - reserved - keep
    if cost > headroom:
        reset = row["reset_at"] or now + timedelta(hours=1)
        return Admission(None, headroom, reset_at=reset), row
    if row["minute_start"] is None or now - row["minute_start"] >= MINUTE:
        row["minute_start"], row["minute_points"] = now, 0
    if per_minute is not None and row["minute_points"] + cost > per_minute and row["minute_points"]:
        return Admission(None, headroom, until=row["minute_start"] + MINUTE), row
    row["minute_points"] += cost
    return Admission(uuid.uuid4().hex, headroom - cost), row


@dataclass
class MemoryBudgets:
    """The ledger in one process (for tests and single-process tools)."""

    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reserved: dict[str, tuple[str, str, int, datetime]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _row(self, credential: str, resource: str, label: str = "") -> dict[str, Any]:
        return self.rows.setdefault(
            (credential, resource),
            {
                "credential": credential,
                "resource": resource,
                "label": label,
                "limit_points": DEFAULT_LIMIT,
                "remaining": None,
                "reset_at": None,
                "minute_start": None,
                "minute_points": 0,
                "observed_at": None,
            },
        )

    def _reserved(self, credential: str, resource: str, now: datetime) -> int:
        live = {k: v for k, v in self.reserved.items() if v[3] > now}
        self.reserved = live
        return sum(p for c, r, p, _ in live.values() if (c, r) == (credential, resource))

    def admit(
        self,
        credential: str,
        resource: str,
        cost: int,
        now: datetime,
        *,
        keep: int = 0,
        per_minute: int | None = None,
        label: str = "",
    ) -> Admission:
        with self._lock:
            row = self._row(credential, resource, label)
            admission, updated = decide(
                row, self._reserved(credential, resource, now), cost, now, keep, per_minute
            )
            row.update(updated)
            if admission.reservation:
                self.reserved[admission.reservation] = (
                    credential,
                    resource,
                    cost,
                    now + RESERVATION,
                )
            return admission

    def observe(
        self,
        credential: str,
        resource: str,
        seen: Observed | None,
        reservation: str | None,
        now: datetime,
    ) -> None:
        with self._lock:
            if reservation:
                self.reserved.pop(reservation, None)
            if seen is not None:
                row = self._row(credential, resource)
                _merge(row, seen, now)

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        with self._lock:
            reserved = {(c, r): self._reserved(c, r, now) for c, r in self.rows}
            return _snapshot_of(list(self.rows.values()), reserved, now)

    def headroom(self, credential: str, resource: str, now: datetime) -> int | None:
        with self._lock:
            row = self.rows.get((credential, resource))
            if row is None or row["remaining"] is None:
                return None
            if row["reset_at"] is not None and row["reset_at"] <= now:
                return row["limit_points"]
            return row["remaining"] - self._reserved(credential, resource, now)


def _snapshot_of(
    rows: list[dict[str, Any]], reserved: Mapping[tuple[str, str], int], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "credential": r["credential"],
            "label": r["label"],
            "resource": r["resource"],
            "limit": r["limit_points"],
            "remaining": r["limit_points"]
            if r["reset_at"] is not None and r["reset_at"] <= now
            else r["remaining"],
            "reserved": reserved.get((r["credential"], r["resource"]), 0),
            "reset_at": r["reset_at"],
            "observed_at": r["observed_at"],
        }
        for r in sorted(rows, key=lambda r: (r["resource"], r["credential"]))
    ]


def _merge(row: dict[str, Any], seen: Observed, now: datetime) -> None:
    """A response's view of the budget: the lowest remaining within one hour (answers
    arrive out of order; the budget only goes down until it resets)."""
    same_hour = (
        row["reset_at"] is not None and abs((row["reset_at"] - seen.reset_at).total_seconds()) < 2
    )
    if same_hour and row["remaining"] is not None:
        row["remaining"] = min(row["remaining"], seen.remaining)
    else:
        row["remaining"] = seen.remaining
    row["reset_at"], row["limit_points"], row["observed_at"] = seen.reset_at, seen.limit, now


class PostgresBudgets:
    """The ledger in PostgreSQL: every worker on every machine draws from one budget."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(
                    self.url, row_factory=dict_row, application_name=application_name("budgets")
                )
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(f"budget ledger: {str(exc).strip()[:200]}") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _retrying(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        """Runs `work` in one transaction. Every transaction locks a credential's budget
        row before its reservations, so writers queue rather than deadlock; a deadlock or
        serialisation failure that still happens is retried, and a dropped connection (a
        failover, a pooler restart) is opened again and the work retried once."""
        with self._lock:
            dropped = 0
            for _ in range(5):
                try:
                    conn = self.conn
                    with conn.transaction():
                        return work(conn)
                except psycopg.errors.TransactionRollback:
                    continue  # a deadlock or serialisation failure: its turn comes again
                except psycopg.OperationalError as exc:
                    self._conn = None
                    dropped += 1
                    if dropped == 2:
                        raise DatabaseUnavailable(
                            f"budget ledger: {str(exc).strip()[:200]}"
                        ) from None
                except psycopg.Error as exc:
                    # A session made while the database was read-only stays read-only:
                    # drop it, so the next call connects anew.
                    if is_stale_session(self._conn, exc):
                        self.close()
                    raise DatabaseUnavailable(f"budget ledger: {str(exc).strip()[:200]}") from None
        raise DatabaseUnavailable("budget ledger: kept conflicting with other workers")

    def admit(
        self,
        credential: str,
        resource: str,
        cost: int,
        now: datetime,
        *,
        keep: int = 0,
        per_minute: int | None = None,
        label: str = "",
    ) -> Admission:
        def work(conn: psycopg.Connection) -> Admission:
            conn.execute(
                "INSERT INTO api_budgets (credential, resource, label, limit_points, "
                "minute_points) VALUES (%s, %s, %s, %s, 0) ON CONFLICT DO NOTHING",
                (credential, resource, label, DEFAULT_LIMIT),
            )
            row = conn.execute(
                "SELECT * FROM api_budgets WHERE credential = %s AND resource = %s FOR UPDATE",
                (credential, resource),
            ).fetchone()
            reserved = conn.execute(
                "SELECT COALESCE(sum(points), 0) AS points FROM api_reservations "
                "WHERE credential = %s AND resource = %s AND expires_at > %s",
                (credential, resource, now),
            ).fetchone()["points"]
            conn.execute(
                "DELETE FROM api_reservations WHERE credential = %s AND resource = %s "
                "AND expires_at <= %s",
                (credential, resource, now),
            )
            admission, updated = decide(row, int(reserved), cost, now, keep, per_minute)
            conn.execute(
                "UPDATE api_budgets SET remaining = %(remaining)s, reset_at = %(reset_at)s, "
                "minute_start = %(minute_start)s, minute_points = %(minute_points)s "
                "WHERE credential = %(credential)s AND resource = %(resource)s",
                updated,
            )
            if admission.reservation:
                conn.execute(
                    "INSERT INTO api_reservations (id, credential, resource, points, "
                    "expires_at) VALUES (%s, %s, %s, %s, %s)",
                    (admission.reservation, credential, resource, cost, now + RESERVATION),
                )
            return admission

        return self._retrying(work)

    def observe(
        self,
        credential: str,
        resource: str,
        seen: Observed | None,
        reservation: str | None,
        now: datetime,
    ) -> None:
        def work(conn: psycopg.Connection) -> None:
            if seen is not None:  # the budget row first, as admit locks it
                conn.execute(
                    "INSERT INTO api_budgets (credential, resource, limit_points, remaining, "
                    "reset_at, observed_at, minute_points) VALUES (%s, %s, %s, %s, %s, %s, 0) "
                    "ON CONFLICT (credential, resource) DO UPDATE SET "
                    "remaining = CASE WHEN abs(extract(epoch FROM api_budgets.reset_at - "
                    "EXCLUDED.reset_at)) < 2 THEN LEAST(api_budgets.remaining, "
                    "EXCLUDED.remaining) ELSE EXCLUDED.remaining END, "
                    "reset_at = EXCLUDED.reset_at, limit_points = EXCLUDED.limit_points, "
                    "observed_at = EXCLUDED.observed_at",
                    (credential, resource, seen.limit, seen.remaining, seen.reset_at, now),
                )
            if reservation:
                conn.execute("DELETE FROM api_reservations WHERE id = %s", (reservation,))

        self._retrying(work)

    def headroom(self, credential: str, resource: str, now: datetime) -> int | None:
        row = self._retrying(
            lambda conn: conn.execute(
                "SELECT b.remaining, b.reset_at, b.limit_points, COALESCE((SELECT "
                "sum(points) FROM api_reservations r WHERE r.credential = b.credential "
                "AND r.resource = b.resource AND r.expires_at > %s), 0) AS reserved "
                "FROM api_budgets b WHERE credential = %s AND resource = %s",
                (now, credential, resource),
            ).fetchone()
        )
        if row is None or row["remaining"] is None:
            return None
        if row["reset_at"] is not None and row["reset_at"] <= now:
            return row["limit_points"]
        return row["remaining"] - int(row["reserved"])

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        """Every credential's budget now, for people (`bin/jobs budget`)."""
        return self._retrying(
            lambda conn: conn.execute(
                "SELECT b.credential, b.label, b.resource, b.limit_points AS limit, "
                "CASE WHEN b.reset_at <= %(now)s THEN b.limit_points ELSE b.remaining END "
                "AS remaining, COALESCE((SELECT sum(points) FROM api_reservations r "
                "WHERE r.credential = b.credential AND r.resource = b.resource "
                "AND r.expires_at > %(now)s), 0) AS reserved, b.reset_at, b.observed_at "
                "FROM api_budgets b ORDER BY b.resource, b.credential",
                {"now": now},
            ).fetchall()
        )
