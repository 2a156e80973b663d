"""How webhooks are doing, read for `bin/jobs webhooks`, the metrics and the alerts: the
deliveries counted, the oldest one not yet acted on, the latest ones, the quarantined,
redeliveries GitHub never made good, each installation's last delivery, and the
installations gone silent while their repositories changed on GitHub. Each read is by an
index (or of a table with a row per installation or counter)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jobstore import Database

COUNTS = "SELECT name, event, n FROM webhook_counts ORDER BY name, event"
OLDEST_OPEN = (
    "SELECT min(received_at) AS at, count(*) AS n FROM ("
    "SELECT received_at FROM github_deliveries "
    "WHERE status IN ('received', 'refresh', 'planner') ORDER BY received_at LIMIT 10000) o"
)
RECENT = (
    "SELECT delivery_id, event, action, repository, installation_id, status, received_at, "
    "processed_at, duplicates, note FROM github_deliveries ORDER BY received_at DESC LIMIT %s"
)
QUARANTINED = (
    "SELECT delivery_id, event, action, repository, received_at, note FROM github_deliveries "
    "WHERE status = 'quarantined' ORDER BY received_at DESC LIMIT %s"
)
UNRESOLVED = (
    "SELECT guid, event, failed_at, requests, requested_at, last_error FROM "
    "webhook_redeliveries WHERE resolved_at IS NULL ORDER BY failed_at LIMIT %s"
)
# GitHub reaching the receiver: the newest delivery it posted, and how many were read
# from its log since (up to 100).
LAST_POSTED = (
    "SELECT received_at FROM github_deliveries WHERE NOT pulled ORDER BY received_at DESC LIMIT 1"
)
PULLED_SINCE = (
    "SELECT count(*) AS n, max(received_at) AS at FROM (SELECT received_at FROM "
    "github_deliveries WHERE pulled AND received_at > %s ORDER BY received_at DESC LIMIT 100) p"
)
UNREACHABLE_AFTER = 3  # deliveries read from the log in a row, none posted: unreachable
UNREACHABLE_FOR = timedelta(minutes=5)  # ... and none posted for this long
LAST_RECONCILE = (
    "SELECT at, listed, failed, redelivered, unresolved, through, error "
    "FROM webhook_reconciles ORDER BY at DESC LIMIT 1"
)
# Per live installation: its newest delivery, and the newest pull request change GitHub
# showed a probe in one of its repositories.
INSTALLATIONS = """
SELECT i.installation_id, i.account, i.suspended_at, i.confirmed_through, i.checked_at,
       (SELECT d.received_at FROM github_deliveries d WHERE d.installation_id = i.installation_id
        ORDER BY d.received_at DESC LIMIT 1) AS last_delivery,
       (SELECT max(p.newest_updated_at) FROM tracked_repositories t
        JOIN repo_probes p ON p.repository = t.repository
        WHERE t.installation_id = i.installation_id) AS last_change,
       (SELECT count(*) FROM tracked_repositories t
        WHERE t.installation_id = i.installation_id) AS repositories
FROM webhook_installations i WHERE i.deleted_at IS NULL ORDER BY i.installation_id
"""


def counts(db: Database) -> list[dict[str, Any]]:
    return db.rows(COUNTS)


def lag(db: Database, now: datetime) -> tuple[float, int]:
    """Seconds the oldest delivery not yet acted on has waited, and how many wait (up to
    10,000)."""
    row = db.one(OLDEST_OPEN)
    if not row or row["at"] is None:
        return 0.0, 0
    return max(0.0, (now - row["at"]).total_seconds()), row["n"]


def installations(db: Database, now: datetime, silence: timedelta) -> list[dict[str, Any]]:
    """Live installations; `silent`: a repository of it changed on GitHub more than
    `silence` after its last delivery (or it never delivered), and that long ago."""
    rows = db.rows(INSTALLATIONS)
    for row in rows:
        change, delivered = row["last_change"], row["last_delivery"]
        row["silent"] = (
            row["suspended_at"] is None
            and change is not None
            and now - change >= silence
            and (delivered is None or change - delivered >= silence)
        )
    return rows


def unreachable(db: Database, now: datetime, after: timedelta) -> dict[str, Any] | None:
    """GitHub cannot reach the receiver: UNREACHABLE_AFTER or more deliveries were read
    from its log since the last one it posted, and that was `after` ago or more (None:
    it can, as far as the deliveries tell)."""
    row = db.one(LAST_POSTED)
    posted = row["received_at"] if row else None
    if posted is not None and now - posted < after:
        return None
    since = db.one(PULLED_SINCE, (posted or datetime.min.replace(tzinfo=now.tzinfo),))
    if not since or since["n"] < UNREACHABLE_AFTER:
        return None
    return {"last_posted": posted, "pulled": since["n"], "last_pulled": since["at"]}


def overview(db: Database, now: datetime, silence: timedelta, limit: int = 20) -> dict[str, Any]:
    """Everything `bin/jobs webhooks` shows."""
    waited, waiting = lag(db, now)
    return {
        "lag_seconds": round(waited, 1),
        "waiting": waiting,
        "counts": counts(db),
        "installations": installations(db, now, silence),
        "last_reconcile": db.one(LAST_RECONCILE),
        "unreachable": unreachable(db, now, UNREACHABLE_FOR),
        "recent": db.rows(RECENT, (limit,)),
        "quarantined": db.rows(QUARANTINED, (limit,)),
        "unresolved": db.rows(UNRESOLVED, (limit,)),
    }
