"""Reconciliation with GitHub's own log of the App's deliveries: GitHub does not send a
failed delivery again by itself. The reconciler lists the recent deliveries
(`GET /app/hook/deliveries`, newest first, as the app), and each one that never reached
us (no 2xx attempt, and not stored here) is read from the log whole
(`GET /app/hook/deliveries/{id}`: its payload, as GitHub sent it) and stored as if it had
come, so a receiver that is down loses no time and costs no probe. One the log cannot
give whole is asked for again (`POST /app/hook/deliveries/{id}/attempts`), again with a
growing pause until it comes.
A deep pass (the planner's, every few minutes) reads back to where the last one ended
and confirms installations; a quick recheck (every few seconds) reads the last minutes,
so a dropped delivery is asked for again within seconds.

What it confirms, per installation: every delivery GitHub attempted before
`confirmed_through` is stored here (or about to be, redelivered). A receiver down for an
hour shows up here as an hour of failed deliveries, each asked for again."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from capture.errors import AccessDenied, CaptureError
from capture.github.app import GitHubApp
from capture.records import when
from capture.webhooks.receiver import EVENT, Delivery, record
from jobstore import Database

OVERLAP = timedelta(minutes=10)  # each pass reads back this far before the last one's end
FIRST_LOOK = timedelta(days=3)  # GitHub keeps deliveries for 3 days
SETTLE = timedelta(minutes=2)  # a change this recent may not have been attempted yet
UNRESOLVED_AFTER = timedelta(hours=1)  # missing this long after it failed: reported
FIRST_BACKOFF = timedelta(seconds=10)  # a redelivery asked for again after this, doubling
MAX_BACKOFF = timedelta(minutes=10)
RECHECK = timedelta(minutes=2)  # how far back a quick recheck reads
MAX_PAGES = 100  # pages of 100 a pass reads at most
NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
LAST = (
    "SELECT through FROM webhook_reconciles WHERE error IS NULL AND deep ORDER BY at DESC LIMIT 1"
)
STORED = "SELECT delivery_id FROM github_deliveries WHERE delivery_id = ANY(%s)"
ASKED = "SELECT guid, requests, requested_at FROM webhook_redeliveries WHERE guid = ANY(%s)"
LAST_RECEIVED = "SELECT max(received_at) AS at FROM github_deliveries"
# Noted while the receiver was down (not asked for: it would have failed too), or asked
# for and not come yet: asked for again from here, however old (no listing needed).
OPEN = (
    "SELECT guid, hook_id, event, requests, requested_at, failed_at FROM webhook_redeliveries "
    "WHERE resolved_at IS NULL ORDER BY failed_at LIMIT %s"
)
NOTE = (
    "INSERT INTO webhook_redeliveries (guid, hook_id, event, requested_at, requests, "
    "failed_at) VALUES (%s, %s, %s, %s, 0, %s) ON CONFLICT (guid) DO NOTHING"
)
DOWN_AFTER = 3  # failed attempts since the last delivery received, none through: down
OPEN_MOST = 500  # open redeliveries a pass asks for again at most
PULL_MOST = 300  # deliveries a pass reads whole from the log at most (the rest: next pass)
ASK = (
    "INSERT INTO webhook_redeliveries (guid, hook_id, event, requested_at, last_error, "
    "failed_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (guid) DO UPDATE SET "
    "hook_id = EXCLUDED.hook_id, "
    "requested_at = EXCLUDED.requested_at, requests = webhook_redeliveries.requests + 1, "
    "last_error = EXCLUDED.last_error"
)
# Redeliveries asked for that have not come yet: the next pass reads back to them.
OLDEST_OPEN = "SELECT min(failed_at) AS at FROM webhook_redeliveries WHERE resolved_at IS NULL"
RESOLVED = (
    "UPDATE webhook_redeliveries r SET resolved_at = %s WHERE r.resolved_at IS NULL "
    "AND EXISTS (SELECT 1 FROM github_deliveries d WHERE d.delivery_id = r.guid)"
)
CONFIRM = (
    "INSERT INTO webhook_installations (installation_id, created_at, confirmed_through, "
    "checked_at) SELECT i, %(now)s, t, %(now)s FROM unnest(%(ids)s::bigint[], "
    "%(through)s::timestamptz[]) AS x(i, t) ON CONFLICT (installation_id) DO UPDATE SET "
    "confirmed_through = GREATEST(webhook_installations.confirmed_through, "
    "EXCLUDED.confirmed_through), checked_at = EXCLUDED.checked_at"
)
LIVE = "SELECT installation_id FROM webhook_installations WHERE deleted_at IS NULL"
RECORD = (
    "INSERT INTO webhook_reconciles (at, listed, failed, redelivered, unresolved, through, "
    "error, deep) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass
class Reconciled:
    listed: int = 0  # deliveries GitHub listed since the last pass
    failed: int = 0  # of them, never received here
    redelivered: int = 0  # asked for again this pass
    pulled: int = 0  # read whole from GitHub's log and stored this pass
    unresolved: int = 0  # failed over UNRESOLVED_AFTER ago, still not received
    through: datetime | None = None
    error: str | None = None
    # the pulled deliveries' repositories (GitHub's id, owner/name), for their apply jobs
    apply: list[tuple[int, str]] = field(default_factory=list)
    pulled_guids: set[str] = field(default_factory=set)

    def as_json(self) -> dict:
        hidden = ("through", "apply", "pulled_guids")
        return {k: v for k, v in self.__dict__.items() if k not in hidden}


def due(db: Database, now: datetime, every: timedelta) -> bool:
    row = db.one("SELECT max(at) AS at FROM webhook_reconciles WHERE deep")
    return row is None or row["at"] is None or now - row["at"] >= every


def backoff(requests: int) -> timedelta:
    """How long after its last request a missing redelivery is asked for again (one only
    noted, never asked for: at once)."""
    if requests <= 0:
        return timedelta(0)
    return min(FIRST_BACKOFF * 2 ** max(requests - 1, 0), MAX_BACKOFF)


def receiver_down(db: Database, attempts: list[dict]) -> bool:
    """GitHub's log shows our receiver unreachable: its last DOWN_AFTER attempts or more,
    all since the newest delivery stored here, failed, and none got through. Asking for
    redeliveries then only fails them again (and backs them off): one is asked for, as a
    canary, the others once it gets through."""
    row = db.one(LAST_RECEIVED)
    last = row["at"] if row else None
    since = [a for a in attempts if last is None or when(a["delivered_at"]) > last]
    if any(200 <= (a["status_code"] or 0) < 300 for a in since):
        return False
    return len(since) >= DOWN_AFTER


def _ask(
    db: Database,
    app: GitHubApp,
    guid: str,
    hook_id: int,
    event: str | None,
    now: datetime,
    first: datetime,
) -> bool:
    """Asks GitHub to send the delivery again; recorded either way."""
    answer = app.call("POST", f"/app/hook/deliveries/{hook_id}/attempts")
    error = None if answer.status_code == 202 else f"HTTP {answer.status_code}"
    db.execute(ASK, (guid, hook_id, event, now, error, first))
    return error is None


def reconcile(
    db: Database, app: GitHubApp, now: datetime, look_back: timedelta | None = None
) -> Reconciled:
    """One pass: the deep one (from where the last deep pass ended, and back to the oldest
    redelivery not yet received) confirms installations; a quick recheck (`look_back`)
    only asks again for recent failures. A failure to list is recorded and reported."""
    deep = look_back is None
    db.execute(RESOLVED, (now,))
    if deep:
        last = db.one(LAST)
        since = (last["through"] - OVERLAP) if last and last["through"] else now - FIRST_LOOK
        oldest = db.one(OLDEST_OPEN)
        if oldest and oldest["at"] is not None:
            since = min(since, oldest["at"] - timedelta(seconds=1))
    else:
        since = now - look_back
    since = max(since, now - FIRST_LOOK)
    report = Reconciled()
    try:
        attempts = _list(app, since)
    except (AccessDenied, ValueError, KeyError) as exc:
        report.error = str(exc)[:300]
        _record(db, now, report, None, deep)
        return report
    by_guid: dict[str, list[dict]] = defaultdict(list)
    for attempt in attempts:
        by_guid[attempt["guid"]].append(attempt)
    report.listed = len(by_guid)
    stored = {r["delivery_id"] for r in db.rows(STORED, (list(by_guid),))}
    failed = {
        guid: max(tries, key=lambda a: a["id"])
        for guid, tries in by_guid.items()
        if guid not in stored and not any(200 <= (a["status_code"] or 0) < 300 for a in tries)
    }
    report.failed = len(failed)
    asked = {r["guid"]: r for r in db.rows(ASKED, (list(failed),))}
    down = receiver_down(db, attempts)
    pending: dict[int, datetime] = {}
    for guid, latest in sorted(failed.items(), key=lambda f: f[1]["delivered_at"]):
        if _pulled(db, app, guid, latest["id"], now, report):
            continue
        before = asked.get(guid)
        installation = latest.get("installation_id") or 0
        first = min(when(a["delivered_at"]) for a in by_guid[guid])
        pending[installation] = min(pending.get(installation, first), first)
        report.unresolved += now - first >= UNRESOLVED_AFTER
        if down:  # noted, asked for once deliveries get through again
            db.execute(NOTE, (guid, latest["id"], latest.get("event"), now, first))
            continue
        if before is not None and now - before["requested_at"] < backoff(before["requests"]):
            continue  # asked for lately: GitHub may not have sent it yet
        report.redelivered += _ask(db, app, guid, latest["id"], latest.get("event"), now, first)
    left = {g: a for g, a in failed.items() if g not in report.pulled_guids}
    if down and left:  # one, the newest, as a canary: once it comes, the rest are asked
        guid, latest = max(left.items(), key=lambda f: f[1]["delivered_at"])
        before = asked.get(guid)
        if before is None or now - before["requested_at"] >= FIRST_BACKOFF:
            first = min(when(a["delivered_at"]) for a in by_guid[guid])
            report.redelivered += _ask(db, app, guid, latest["id"], latest.get("event"), now, first)
    # older ones, noted or asked for before: no listing reaches back to them
    for row in db.rows(OPEN, (OPEN_MOST,)):
        if row["guid"] in failed or row["guid"] in stored:
            continue
        if _pulled(db, app, row["guid"], row["hook_id"], now, report):
            continue
        if down or now - row["requested_at"] < backoff(row["requests"]):
            continue
        report.redelivered += _ask(
            db, app, row["guid"], row["hook_id"], row["event"], now, row["failed_at"]
        )
    through = now - SETTLE
    if not deep:  # recorded only when it found something (it runs every few seconds)
        if report.failed or report.pulled:
            _record(db, now, report, None, deep=False)
        return report
    # every live installation: one GitHub logged no failure for is confirmed as well
    known = {r["installation_id"] for r in db.rows(LIVE)}
    seen = {a.get("installation_id") for a in attempts if a.get("installation_id")}
    ids = sorted(known | seen | {i for i in pending if i})
    ends = [min(pending.get(i, through), through) for i in ids]
    if ids:
        db.execute(CONFIRM, {"now": now, "ids": ids, "through": ends})
    report.through = min(ends, default=through)
    _record(db, now, report, through, deep=True)
    return report


def _pulled(
    db: Database, app: GitHubApp, guid: str, hook_id: int, now: datetime, report: Reconciled
) -> bool:
    """The delivery read whole from the log and stored (at most PULL_MOST a pass); False
    if the log would not give it (the caller asks for it again instead)."""
    if report.pulled >= PULL_MOST:
        return False
    try:
        answer = app.call("GET", f"/app/hook/deliveries/{hook_id}")
        doc = answer.json() if answer.status_code == 200 else None
    except (CaptureError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("guid") != guid:
        return False
    request = doc.get("request")
    payload = request.get("payload") if isinstance(request, dict) else None
    event = doc.get("event")
    if not isinstance(payload, dict) or not isinstance(event, str) or not EVENT.fullmatch(event):
        return False
    stored: Delivery = record(db, guid, event, payload, now, counted="pulled")
    report.pulled += 1
    report.pulled_guids.add(guid)
    if stored.apply is not None:
        report.apply.append(stored.apply)
    return True


def _record(
    db: Database, now: datetime, report: Reconciled, through: datetime | None, deep: bool
) -> None:
    counts = (report.listed, report.failed, report.redelivered, report.unresolved)
    db.execute(RECORD, (now, *counts, through, report.error, deep))


def _list(app: GitHubApp, since: datetime) -> list[dict]:
    """Every attempt GitHub lists delivered at or after `since` (pages, newest first)."""
    found: list[dict] = []
    params: dict | None = {"per_page": 100}
    path = "/app/hook/deliveries"
    for _ in range(MAX_PAGES):
        answer = app.call("GET", path, params)
        if answer.status_code != 200:
            raise AccessDenied(
                f"GitHub would not list the app's deliveries (HTTP {answer.status_code})"
            )
        page = answer.json()
        if not isinstance(page, list):
            raise ValueError("the deliveries list is not a list")
        older = False
        for item in page:
            if when(item["delivered_at"]) < since:
                older = True
                break
            found.append(item)
        link = NEXT.search(answer.headers.get("link", ""))
        if older or not page or link is None:
            break
        cursor = re.search(r"[?&]cursor=([^&]+)", link.group(1))
        if cursor is None:
            break
        params = {"per_page": 100, "cursor": cursor.group(1)}
    return found
