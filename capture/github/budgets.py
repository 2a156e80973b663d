"""API budgets shared by every worker, lane and machine: per credential and resource, what
the API last said is left and when it resets, and the points reserved by requests in
flight. Admission reserves the planned cost of the next request, so two workers never both
spend the last points; a per-minute pace keeps them under secondary limits.

Credentials are named by a bucket key and a label (an installation, a user, a token's
fingerprint), never by the token. `MemoryBudgets` is the ledger in one process;
capture.github.ledger keeps it in PostgreSQL for every process.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

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
                merge(row, seen, now)

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        with self._lock:
            reserved = {(c, r): self._reserved(c, r, now) for c, r in self.rows}
            return snapshot_of(list(self.rows.values()), reserved, now)

    def headroom(self, credential: str, resource: str, now: datetime) -> int | None:
        with self._lock:
            row = self.rows.get((credential, resource))
            if row is None or row["remaining"] is None:
                return None
            if row["reset_at"] is not None and row["reset_at"] <= now:
                return row["limit_points"]
            return row["remaining"] - self._reserved(credential, resource, now)


def snapshot_of(
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


def merge(row: dict[str, Any], seen: Observed, now: datetime) -> None:
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
