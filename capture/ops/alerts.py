"""Alert rules over the health snapshot, evaluated by the sweeper for operators without
Prometheus (the same rules, same thresholds, ship as `alerts.rules.yml` for those with
it). An alert is notified when it starts firing and when it resolves, once each; the
state is kept in `alert_state`, so several sweepers do not notify twice."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg

from capture.ops.health import Health
from jobstore import Database

log = logging.getLogger(__name__)
BUDGET_LOW = 0.10  # of a credential's hour
ERROR_RATE = 0.20  # failed attempts of those that ended, over the last hour
MIN_ATTEMPTS = 5  # an error rate over fewer attempts is noise


@dataclass(frozen=True)
class Rule:
    name: str
    summary: str
    check: Callable[[Health], list[tuple[str, str]]]  # (key, detail) per firing instance
    hold: timedelta  # firing this long before it is notified (Prometheus's `for:`)


def _lanes_down(h: Health) -> list[tuple[str, str]]:
    return [(lane, f"{lane} is down: {why}") for lane, why in sorted(h.down.items())]


def _stuck(h: Health) -> list[tuple[str, str]]:
    if not h.stuck:
        return []
    shown = ", ".join(h.stuck[:5])
    return [("jobs", f"{len(h.stuck)} jobs silent past their lane's limit: {shown}")]


def _quarantined(h: Health) -> list[tuple[str, str]]:
    if not h.quarantined:
        return []
    shown = ", ".join(h.quarantined[:5])
    return [("jobs", f"{len(h.quarantined)} jobs set aside, unreadable: {shown}")]


def _budget_low(h: Health) -> list[tuple[str, str]]:
    low = []
    for row in h.budgets:
        remaining, limit = row["remaining"], row["limit"]
        if remaining is not None and limit and remaining < BUDGET_LOW * limit:
            name = row["label"] or row["credential"]
            detail = f"{name} has {remaining} of {limit} {row['resource']} points left"
            low.append((f"{row['credential']}/{row['resource']}", detail))
    return low


def _breached(h: Health) -> list[tuple[str, str]]:
    if not h.breached_names:
        return []
    shown = ", ".join(h.breached_names[:5])
    return [("repositories", f"{len(h.breached_names)} repositories past target: {shown}")]


def _gone(h: Health) -> list[tuple[str, str]]:
    """One alert per repository: notified once when it goes, once if it comes back."""
    return [(name, f"{name} is gone on GitHub: no longer probed or refreshed") for name in h.gone]


def _error_rate(h: Health) -> list[tuple[str, str]]:
    high = []
    for lane, (failed, ended) in sorted(h.errors.items()):
        if ended >= MIN_ATTEMPTS and failed / ended > ERROR_RATE:
            high.append((lane, f"{lane}: {failed} of {ended} attempts failed in the last hour"))
    return high


def _silent(h: Health) -> list[tuple[str, str]]:
    return [
        (
            str(row["installation_id"]),
            f"installation {row['installation_id']} ({row['account'] or '?'}): its repositories "
            f"changed on GitHub at {row['last_change']:%Y-%m-%d %H:%M} UTC, its last delivery "
            f"came {row['last_delivery'] or 'never'}",
        )
        for row in h.silent
    ]


def _unreachable(h: Health) -> list[tuple[str, str]]:
    u = h.unreachable
    if u is None:
        return []
    posted = f"{u['last_posted']:%Y-%m-%d %H:%M} UTC" if u["last_posted"] else "never"
    return [
        (
            "receiver",
            f"GitHub's deliveries are not reaching the receiver: {u['pulled']} read from its "
            f"log instead since the last one it posted ({posted}); data still flows, check "
            "the webhook URL, TLS and the load balancer",
        )
    ]


_MIN = timedelta(minutes=1)
RULES = (
    Rule("LaneDown", "a lane is down or stopped", _lanes_down, 5 * _MIN),
    Rule(
        "JobsStuck", "jobs are silent past their lane's lease or start deadline", _stuck, 10 * _MIN
    ),
    Rule(
        "JobsQuarantined",
        "jobs are set aside because their events cannot be read (bin/jobs quarantined)",
        _quarantined,
        timedelta(0),
    ),
    Rule("BudgetLow", "a credential's API budget is nearly spent", _budget_low, 5 * _MIN),
    Rule(
        "FreshnessBreached",
        "tracked repositories are past their freshness target",
        _breached,
        15 * _MIN,
    ),
    Rule("ErrorRateHigh", "a lane's attempts fail too often", _error_rate, 10 * _MIN),
    Rule(
        "WebhooksSilent",
        "an installation's repositories changed on GitHub and no delivery came from it",
        _silent,
        10 * _MIN,
    ),
    Rule(
        "WebhookReceiverUnreachable",
        "GitHub cannot post deliveries: they are read from its log instead",
        _unreachable,
        5 * _MIN,
    ),
    Rule(
        "RepositoryGone",
        "a tracked repository is deleted, private or no longer visible on GitHub",
        _gone,
        timedelta(0),
    ),
)
HOLD = {rule.name: rule.hold for rule in RULES}


@dataclass(frozen=True)
class Change:
    rule: str
    key: str
    status: str  # firing, resolved
    detail: str


def firing(health: Health) -> list[Change]:
    return [
        Change(rule.name, key, "firing", detail)
        for rule in RULES
        for key, detail in rule.check(health)
    ]


class AlertState:
    """Which alerts fire, in `alert_state`; `update` returns what changed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def update(self, now_firing: Iterable[Change], now: datetime) -> list[Change]:
        current = {(c.rule, c.key): c for c in now_firing}

        def work(conn: psycopg.Connection) -> list[Change]:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('prcapture alerts'))")
            open_ = {
                (r["rule"], r["key"]): r
                for r in conn.execute("SELECT * FROM alert_state WHERE resolved_at IS NULL")
            }
            changes = [c for k, c in current.items() if k not in open_]
            for change in changes:
                conn.execute(
                    "INSERT INTO alert_state (rule, key, detail, firing_since) "
                    "VALUES (%s, %s, %s, %s)",
                    (change.rule, change.key, change.detail, now),
                )
            for (rule, key), row in open_.items():
                if (rule, key) not in current:
                    conn.execute(
                        "UPDATE alert_state SET resolved_at = %s WHERE id = %s", (now, row["id"])
                    )
                    changes.append(Change(rule, key, "resolved", row["detail"]))
            return changes

        return self.db.run(work)

    def open(self) -> list[dict[str, Any]]:
        return self.db.rows(
            "SELECT rule, key, detail, firing_since FROM alert_state "
            "WHERE resolved_at IS NULL ORDER BY firing_since"
        )

    def notify(self, webhook: str, now: datetime, client: httpx.Client) -> int:
        """POSTs every start and end not yet delivered (of the last day) to the webhook as
        JSON, and marks each delivered; returns how many it delivered. An alert is
        notified once it has fired for its rule's hold (one that ends sooner is never
        notified, start or end). A webhook that fails is logged, never fatal, and tried
        again next pass: an alert is never silently dropped."""
        rows = self.db.rows(
            "SELECT id, rule, key, detail, firing_since, resolved_at, notified_firing "
            "FROM alert_state WHERE (NOT notified_firing OR (resolved_at IS NOT NULL "
            "AND NOT notified_resolved)) AND coalesce(resolved_at, firing_since) > %s "
            "ORDER BY id",
            (now - timedelta(days=1),),
        )
        sent = 0
        for row in rows:
            hold = HOLD.get(row["rule"], timedelta(0))
            end = row["resolved_at"] or now
            if not row["notified_firing"] and end - row["firing_since"] < hold:
                if row["resolved_at"] is not None:  # a blip: neither start nor end
                    self.db.execute(
                        "UPDATE alert_state SET notified_firing = true, "
                        "notified_resolved = true WHERE id = %s",
                        (row["id"],),
                    )
                continue
            for status in ("firing", "resolved"):
                if status == "firing" and row["notified_firing"]:
                    continue
                if status == "resolved" and row["resolved_at"] is None:
                    continue
                if not _post(client, webhook, row, status):
                    return sent
                self.db.execute(
                    f"UPDATE alert_state SET notified_{status} = true WHERE id = %s",
                    (row["id"],),
                )
                sent += 1
        return sent


def _post(client: httpx.Client, webhook: str, row: dict[str, Any], status: str) -> bool:
    at = row["firing_since"] if status == "firing" else row["resolved_at"]
    try:
        answer = client.post(
            webhook,
            json={
                "alert": row["rule"],
                "key": row["key"],
                "status": status,
                "detail": row["detail"],
                "at": at.isoformat(),
            },
            timeout=10,
        )
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning(
            "alert webhook failed for %s %s (%s); tried again next pass",
            row["rule"],
            status,
            type(exc).__name__,
        )
        return False
    return True
