"""The budget ledger in PostgreSQL (api_budgets, api_reservations): every worker on every
machine draws from one budget, by the admission rule of capture.github.budgets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from capture.github.budgets import DEFAULT_LIMIT, RESERVATION, Admission, Budgets, Observed, decide
from jobstore import Database, fingerprint


class PostgresBudgets:
    """The ledger in PostgreSQL: every worker on every machine draws from one budget."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _retrying(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        """Runs `work` in one transaction. Every transaction locks a credential's budget
        row before its reservations, so writers queue rather than deadlock; a deadlock or
        a dropped connection is retried by the database component."""
        return self.db.run(work)

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
