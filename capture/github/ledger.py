"""The budget ledger in PostgreSQL (api_budgets, api_reservations): every worker on every
machine draws from one budget, by the admission rule of capture.github.budgets.

Admission is batched: a process takes a lease of a few requests' worth of points (one
reservation, one short transaction) and admits requests from it without asking the
database; what GitHub says is left is written back at most every FLUSH seconds (at once
when it runs low). A lease counts as reserved for everyone else until it is spent,
returned or expired (a crashed worker's after RESERVATION), so two workers never spend
the same points; a lease is only ever overcounted (points spent show in GitHub's
remaining before the lease shrinks at the next write), never undercounted.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from capture.github.budgets import (
    DEFAULT_LIMIT,
    RESERVATION,
    Admission,
    Budgets,
    Observed,
    decide,
    merge,
    snapshot_of,
)
from jobstore import Database, fingerprint

LEASE = 25  # points a process takes at a time (a few queries' worth)
FLUSH = timedelta(seconds=5)  # what GitHub said is left is written at most this often
FRESH = timedelta(seconds=2)  # headroom read from the database is reused this long
LOW = 4  # ... and at once when fewer than this many leases' worth are left

LOCK_ROW = (
    "INSERT INTO api_budgets (credential, resource, label, limit_points, minute_points) "
    "VALUES (%s, %s, %s, %s, 0) ON CONFLICT (credential, resource) DO UPDATE SET "
    "label = CASE WHEN EXCLUDED.label = '' THEN api_budgets.label ELSE EXCLUDED.label END "
    "RETURNING *"
)
# Read after the row is locked: a statement sees what was committed when it began, so the
# sum must not be part of the locking statement (it would miss a lease taken meanwhile).
RESERVED = (
    "SELECT COALESCE(sum(points), 0) AS reserved FROM api_reservations "
    "WHERE credential = %s AND resource = %s AND expires_at > %s AND id <> %s"
)
OBSERVE = (
    "INSERT INTO api_budgets (credential, resource, limit_points, remaining, reset_at, "
    "observed_at, minute_points) VALUES (%s, %s, %s, %s, %s, %s, 0) "
    "ON CONFLICT (credential, resource) DO UPDATE SET "
    "remaining = CASE WHEN abs(extract(epoch FROM api_budgets.reset_at - EXCLUDED.reset_at)) "
    "< 2 THEN LEAST(api_budgets.remaining, EXCLUDED.remaining) ELSE EXCLUDED.remaining END, "
    "reset_at = EXCLUDED.reset_at, limit_points = EXCLUDED.limit_points, "
    "observed_at = EXCLUDED.observed_at"
)
SNAPSHOT = (
    "SELECT b.credential, b.label, b.resource, b.limit_points, b.remaining, b.reset_at, "
    "b.observed_at, COALESCE((SELECT sum(points) FROM api_reservations r "
    "WHERE r.credential = b.credential AND r.resource = b.resource "
    "AND r.expires_at > %(now)s), 0) AS reserved "
    "FROM api_budgets b ORDER BY b.resource, b.credential"
)


@dataclass
class Lease:
    """Points this process holds on one credential's budget: its reservation row, which
    holds `points + inflight + unwritten` (what others must not spend)."""

    reservation: str
    points: int  # left to admit from
    keep: int  # the reserve it was granted above: it serves requests keeping as much
    expires_at: datetime
    reset_at: datetime | None
    inflight: int = 0  # admitted, not answered yet
    unwritten: int = 0  # answered: in GitHub's remaining as seen here, not yet written

    @property
    def held(self) -> int:
        return self.points + self.inflight + self.unwritten


@dataclass
class Seen:
    """What GitHub last said of a credential's budget here, not yet written."""

    observed: Observed
    at: datetime
    written_at: datetime | None = None


class PostgresBudgets:
    """The ledger in PostgreSQL: every worker on every machine draws from one budget.
    Thread-safe; one per process (its leases are the process's)."""

    def __init__(self, db: Database, lease: int = LEASE) -> None:
        self.db = db
        self.lease = lease
        self._leases: dict[tuple[str, str], Lease] = {}
        self._seen: dict[tuple[str, str], Seen] = {}
        self._rows: tuple[datetime, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

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
        key = (credential, resource)
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and self._usable(lease, cost, keep, now):
                lease.points -= cost
                lease.inflight += cost
                return Admission(f"lease:{lease.reservation}:{cost}", lease.points)
            return self._take(key, lease, cost, now, keep, per_minute, label)

    @staticmethod
    def _usable(lease: Lease, cost: int, keep: int, now: datetime) -> bool:
        fresh = lease.expires_at > now and (lease.reset_at is None or lease.reset_at > now)
        return fresh and lease.points >= cost and keep <= lease.keep

    def _take(
        self,
        key: tuple[str, str],
        old: Lease | None,
        cost: int,
        now: datetime,
        keep: int,
        per_minute: int | None,
        label: str,
    ) -> Admission:
        """A new lease (the old one's unspent points given back) in one transaction: the
        budget row is locked for it, not for every request."""
        credential, resource = key
        seen = self._seen.get(key)
        mine = old.reservation if old is not None else uuid.uuid4().hex
        carried = 0 if old is None else old.inflight + (0 if seen is not None else old.unwritten)

        def work(conn: psycopg.Connection) -> tuple[Admission, int]:
            if seen is not None:  # the budget row first, as every writer does
                conn.execute(OBSERVE, observe_params(credential, resource, seen.observed, now))
            row = conn.execute(LOCK_ROW, (credential, resource, label, DEFAULT_LIMIT)).fetchone()
            reserved = int(
                conn.execute(RESERVED, (credential, resource, now, mine)).fetchone()["reserved"]
            )
            reserved += carried  # in flight from the old lease: still nobody else's
            remaining = row["limit_points"] if row["remaining"] is None else row["remaining"]
            if row["reset_at"] is not None and row["reset_at"] <= now:
                remaining = row["limit_points"]
            take = max(cost, min(self.lease, remaining - reserved - keep))
            admission, updated = decide(row, reserved, take, now, keep, per_minute)
            conn.execute(  # what crashed workers left, expired
                "DELETE FROM api_reservations WHERE credential = %s AND resource = %s "
                "AND expires_at <= %s AND id <> %s",
                (credential, resource, now, mine),
            )
            taken = take if admission.admitted else 0
            if admission.admitted:
                conn.execute(
                    "UPDATE api_budgets SET remaining = %(remaining)s, reset_at = %(reset_at)s, "
                    "minute_start = %(minute_start)s, minute_points = %(minute_points)s "
                    "WHERE credential = %(credential)s AND resource = %(resource)s",
                    updated,
                )
            conn.execute(
                "INSERT INTO api_reservations (id, credential, resource, points, expires_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "points = EXCLUDED.points, expires_at = EXCLUDED.expires_at",
                (mine, credential, resource, taken + carried, now + RESERVATION),
            )
            return admission, taken

        admission, taken = self.db.run(work)
        if seen is not None:
            seen.written_at = now
        lease = Lease(mine, 0, keep, now + RESERVATION, None, carried, 0)
        self._leases[key] = lease
        self._rows = None
        if not taken:
            return admission
        lease.points, lease.inflight = taken - cost, lease.inflight + cost
        return Admission(f"lease:{mine}:{cost}", admission.headroom + taken - cost)

    def observe(
        self,
        credential: str,
        resource: str,
        seen: Observed | None,
        reservation: str | None,
        now: datetime,
    ) -> None:
        """What an answer's headers said; with a lease's reservation it is kept here and
        written at most every FLUSH (at once when the budget runs low), else at once."""
        key = (credential, resource)
        with self._lock:
            if seen is not None:
                held = self._seen.get(key)
                if held is None or held.written_at is None:
                    self._seen[key] = held = Seen(seen, now)
                else:
                    merged = {
                        "remaining": held.observed.remaining,
                        "reset_at": held.observed.reset_at,
                        "limit_points": held.observed.limit,
                        "observed_at": held.at,
                    }
                    merge(merged, seen, now)
                    held.observed = Observed(
                        merged["limit_points"], merged["remaining"], merged["reset_at"]
                    )
                    held.at = now
            leased = reservation is not None and reservation.startswith("lease:")
            if leased:
                self._answered(key, reservation or "", seen is not None)
            elif reservation:
                self.db.execute("DELETE FROM api_reservations WHERE id = %s", (reservation,))
            if seen is None:
                return
            held = self._seen[key]
            due = held.written_at is None or now - held.written_at >= FLUSH
            low = seen.remaining < LOW * self.lease
            if not leased or due or low:
                self._write(key, held, now)

    def _answered(self, key: tuple[str, str], reservation: str, charged: bool) -> None:
        """A request admitted from a lease was answered: its points are in what GitHub
        says is left (`charged`), or, with no answer, back in the lease."""
        _, reservation_id, cost = reservation.split(":")
        lease = self._leases.get(key)
        if lease is None or lease.reservation != reservation_id:
            return  # a lease given back meanwhile: its row went with it
        lease.inflight = max(0, lease.inflight - int(cost))
        if charged:
            lease.unwritten += int(cost)
        else:
            lease.points += int(cost)

    def _write(self, key: tuple[str, str], held: Seen, now: datetime) -> None:
        """GitHub's word on the budget, and this process's lease shrunk by what it spent
        since (that is in GitHub's remaining now), in one transaction."""
        credential, resource = key
        lease = self._leases.get(key)

        def work(conn: psycopg.Connection) -> None:
            conn.execute(OBSERVE, observe_params(credential, resource, held.observed, now))
            if lease is not None and lease.unwritten:
                conn.execute(
                    "UPDATE api_reservations SET points = %s, expires_at = %s WHERE id = %s",
                    (lease.points + lease.inflight, now + RESERVATION, lease.reservation),
                )

        self.db.run(work)
        held.written_at = now
        if lease is not None:
            lease.unwritten = 0
            lease.expires_at = now + RESERVATION
        self._rows = None

    def headroom(self, credential: str, resource: str, now: datetime) -> int | None:
        """Points the credential could still spend, this process's lease included (read
        from the database at most every FRESH)."""
        key = (credential, resource)
        rows = self._snapshot_rows(now)
        row = next((r for r in rows if (r["credential"], r["resource"]) == key), None)
        if row is None or row["remaining"] is None:
            return None
        lease = self._leases.get(key)
        mine = lease.points if lease is not None and lease.expires_at > now else 0
        if row["reset_at"] is not None and row["reset_at"] <= now:
            return row["limit_points"]
        return row["remaining"] - int(row["reserved"]) + mine

    def _snapshot_rows(self, now: datetime) -> list[dict[str, Any]]:
        cached = self._rows
        if cached is not None and timedelta(0) <= now - cached[0] < FRESH:
            return cached[1]
        rows = self.db.rows(SNAPSHOT, {"now": now})
        self._rows = (now, rows)
        return rows

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        """Every credential's budget now, for people (`bin/jobs budget`)."""
        rows = self.db.rows(SNAPSHOT, {"now": now})
        reserved = {(r["credential"], r["resource"]): int(r["reserved"]) for r in rows}
        return snapshot_of(rows, reserved, now)

    def flush(self, now: datetime | None = None) -> None:
        """Writes what GitHub last said and gives back unspent leases (a process closing)."""
        now = now or datetime.now(UTC)
        with self._lock:
            for key, held in list(self._seen.items()):
                if held.written_at is None or held.written_at < held.at:
                    self._write(key, held, now)
            leases, self._leases = list(self._leases.values()), {}
        if leases:
            self.db.execute(
                "DELETE FROM api_reservations WHERE id = ANY(%s)",
                ([lease.reservation for lease in leases],),
            )


def observe_params(
    credential: str, resource: str, seen: Observed, now: datetime
) -> tuple[Any, ...]:
    return (credential, resource, seen.limit, seen.remaining, seen.reset_at, now)


def dispatch_observer(budgets: Budgets, token: str) -> Callable[[httpx.Headers], None]:
    """Records what the dispatch token has left (the workflow token has 1,000 an hour)
    from the headers of each answer, in the shared ledger, named by its fingerprint."""
    if not token:
        return lambda headers: None
    key = "dispatch:" + fingerprint(token)

    def observe(headers: httpx.Headers) -> None:
        seen = Observed.of(headers)
        if seen is not None:
            budgets.observe(key, "core", seen, None, datetime.now(UTC))

    return observe
