"""The planner's part of webhooks, once a pass: deliveries no apply job holds are given one
(an enqueue that failed, a job that ended just as a delivery came), installation and
repository deliveries are applied to the tracked repositories, and (at its cadence) the
App's delivery log is reconciled."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from capture.errors import CaptureError
from capture.freshness.registry import Registry
from capture.github.app import GitHubApp
from capture.settings import WebhookSettings
from capture.webhooks.reconcile import RECHECK, Reconciled, due, reconcile
from jobstore import Database, Dispatcher, JobSpec, JobStoreError, Status

log = logging.getLogger(__name__)
CATCH_UP_AFTER = timedelta(seconds=60)  # an open delivery this old with no job is given one
CATCH_UP_MAX = 500  # repositories a pass gives an apply job
PLANNER_BATCH = 200  # installation and repository deliveries a pass applies
ORPHANS = (
    "SELECT repository_id, max(repository) AS repository FROM ("
    "SELECT repository_id, repository FROM github_deliveries "
    "WHERE status IN ('received', 'refresh') AND received_at < %s "
    "ORDER BY received_at LIMIT %s) o GROUP BY repository_id"
)
PLANNER_OPEN = (
    "SELECT delivery_id, event, action, installation_id, received_at, payload "
    "FROM github_deliveries WHERE status = 'planner' ORDER BY received_at LIMIT %s"
)
DONE = (
    "UPDATE github_deliveries SET status = %s, note = %s, processed_at = %s WHERE delivery_id = %s"
)
INSTALLED = (
    "INSERT INTO webhook_installations (installation_id, account, created_at) "
    "VALUES (%s, %s, %s) ON CONFLICT (installation_id) DO UPDATE SET "
    "account = COALESCE(EXCLUDED.account, webhook_installations.account), deleted_at = NULL"
)
# Repositories of installations the reconciler confirmed: their data is fresh (and stored
# whole) as of the confirmed time, unless a delivery of theirs from before it is still
# open or was quarantined. Moves the watermark the probe compares with, too.
CONFIRM = """
WITH c AS (
    SELECT t.repository, i.confirmed_through AS at
    FROM webhook_installations i
    JOIN tracked_repositories t ON t.installation_id = i.installation_id
    WHERE i.suspended_at IS NULL AND i.deleted_at IS NULL AND i.confirmed_through IS NOT NULL
      AND t.gone_at IS NULL AND t.bootstrap <> 'pending' AND t.repo_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM github_deliveries d
                      WHERE d.repository_id = t.repo_id AND d.status IN ('received', 'refresh')
                        AND d.received_at < i.confirmed_through)
      AND NOT EXISTS (SELECT 1 FROM github_deliveries d WHERE d.repository_id = t.repo_id
                      AND d.status = 'quarantined')
), w AS (
    UPDATE refresh_watermarks w SET updated_at = GREATEST(w.updated_at, c.at),
        comments_at = GREATEST(w.comments_at, c.at), advanced_at = %(now)s
    FROM c WHERE w.repository = c.repository
      AND (w.updated_at < c.at OR w.comments_at IS NULL OR w.comments_at < c.at)
    RETURNING w.repository
)
UPDATE repo_probes p SET fresh_as_of = c.at, moved_by = 'webhook'
FROM c WHERE p.repository = c.repository AND p.pending_since IS NULL
  AND (p.fresh_as_of IS NULL OR p.fresh_as_of < c.at)
  AND EXISTS (SELECT 1 FROM refresh_watermarks x WHERE x.repository = c.repository)
"""
GONE_REASONS = {"deleted": "deleted on GitHub", "privatized": "made private on GitHub"}


def submit_apply(
    dispatcher: Dispatcher,
    repository_id: int,
    repository: str,
    now: datetime,
    lane: str | None,
) -> Any:
    """The repository's apply job: one active at a time (a delivery that comes while it
    is active is its too, and wakes it if it waits out a window), real-time (its window,
    the last hour, is the router's rule `recent`)."""
    spec = JobSpec.create(
        "github-webhooks",
        repository,
        since=now - timedelta(hours=1),  # what changed just now: the router's real-time lane
        until=now,
        trigger="webhook",
        priority="high",
        dedupe_key=f"github-webhooks:{repository_id}",
        params={"repository_id": repository_id},
    )
    submitted = dispatcher.submit(spec, now, lane)
    held = submitted.job
    waiting = not submitted.enqueued.created and held.status is Status.RETRY_SCHEDULED
    # its job waits out a refresh window: the new delivery is applied now, not then
    woken = waiting and dispatcher.store.wake(held.id, "a webhook delivery arrived", now)
    if woken and held.lane != "local":  # a local worker is told by the routing itself
        dispatcher.send(held.id, now)
    return submitted


@dataclass
class WebhookReport:
    caught_up: int = 0  # apply jobs enqueued for deliveries no job held
    applied: int = 0  # installation and repository deliveries applied
    tracked: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    reconciled: dict[str, Any] | None = None  # the reconciler's pass, when it ran
    confirmed: int = 0  # repositories made fresh by confirmed deliveries
    errors: list[str] = field(default_factory=list)


def webhook_pass(
    db: Database,
    registry: Registry,
    dispatcher: Dispatcher,
    app: GitHubApp | None,
    now: datetime,
    settings: WebhookSettings,
) -> WebhookReport:
    """The planner's webhook work for one pass; each part's failure is reported and the
    others go on."""
    report = apply_planner_events(db, registry, now, settings)
    report.caught_up = catch_up(db, dispatcher, now, settings)
    every = timedelta(minutes=settings.reconcile_minutes)
    if app is not None and due(db, now, every):
        try:
            done = reconcile(db, app, now)
        except CaptureError as exc:
            done = Reconciled(error=str(exc)[:300])
        report.reconciled = done.as_json()
        if done.error:
            report.errors.append(f"webhook reconciliation failed: {done.error}")
        applying(dispatcher, done, now, settings.lane)
    report.confirmed = db.execute(CONFIRM, {"now": now})
    return report


def recheck(
    db: Database,
    app: GitHubApp,
    now: datetime,
    dispatcher: Dispatcher | None = None,
    lane: str | None = None,
) -> Reconciled:
    """A quick look at the last minutes of the App's delivery log: a dropped delivery is
    read from the log (or asked for again) within seconds, run every
    CAPTURE_WEBHOOK_RECHECK_SECONDS; with `dispatcher`, the ones read are given their
    apply jobs at once (else the planner's catch-up does)."""
    try:
        done = reconcile(db, app, now, look_back=RECHECK)
    except CaptureError as exc:
        return Reconciled(error=str(exc)[:300])
    if dispatcher is not None:
        applying(dispatcher, done, now, lane)
    return done


def applying(dispatcher: Dispatcher, done: Reconciled, now: datetime, lane: str | None) -> None:
    """Apply jobs for the repositories of deliveries read from the log (one that cannot be
    enqueued now is the catch-up's)."""
    for repository_id, repository in dict(done.apply).items():
        try:
            submit_apply(dispatcher, repository_id, repository, now, lane)
        except (JobStoreError, ValueError) as exc:
            log.warning("deliveries of %s: no apply job yet (%s)", repository, exc)


def catch_up(db: Database, dispatcher: Dispatcher, now: datetime, settings: WebhookSettings) -> int:
    """Apply jobs for open deliveries older than CATCH_UP_AFTER (enqueued again: a holder
    still active answers for them)."""
    rows = db.rows(ORPHANS, (now - CATCH_UP_AFTER, CATCH_UP_MAX))
    done = 0
    for row in rows:
        try:
            submitted = submit_apply(
                dispatcher, row["repository_id"], row["repository"], now, settings.lane
            )
        except (JobStoreError, ValueError) as exc:
            log.warning("deliveries of %s: no apply job (%s)", row["repository"], exc)
            continue
        done += submitted.enqueued.created
    return done


def apply_planner_events(
    db: Database, registry: Registry, now: datetime, settings: WebhookSettings
) -> WebhookReport:
    """installation, installation_repositories and repository deliveries, in the order
    received; one that cannot be applied is quarantined (kept, with why) and the rest go on."""
    report = WebhookReport()
    for row in db.rows(PLANNER_OPEN, (PLANNER_BATCH,)):
        try:
            note = _planner_event(db, registry, row, now, settings, report)
            status = "processed"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            status, note = "quarantined", f"cannot apply: {type(exc).__name__}: {exc}"[:300]
            report.errors.append(f"delivery {row['delivery_id']}: {note}")
        db.execute(DONE, (status, note, now, row["delivery_id"]))
        report.applied += 1
    return report


def _repos(items: Any) -> list[tuple[str, int | None, str | None]]:
    return [(r["full_name"], r.get("id"), r.get("node_id")) for r in items or ()]


def _planner_event(
    db: Database,
    registry: Registry,
    row: dict,
    now: datetime,
    settings: WebhookSettings,
    report: WebhookReport,
) -> str:
    event, action, payload = row["event"], row["action"], row["payload"]
    if event in ("installation", "installation_repositories"):
        installation = payload["installation"]
        inst_id = int(installation["id"])
        account = (installation.get("account") or {}).get("login")
        if event == "installation" and action == "deleted":
            gone = registry.uncover(inst_id)
            db.execute(
                "UPDATE webhook_installations SET deleted_at = %s WHERE installation_id = %s",
                (now, inst_id),
            )
            report.untracked += gone
            return f"uninstalled: {len(gone)} repositories no longer tracked"
        db.execute(INSTALLED, (inst_id, account, now))
        if event == "installation" and action in ("suspend", "unsuspend"):
            db.execute(
                "UPDATE webhook_installations SET suspended_at = %s WHERE installation_id = %s",
                (now if action == "suspend" else None, inst_id),
            )
            return f"installation {action}ed"
        if event == "installation_repositories" and action == "removed":
            names = [name for name, _, _ in _repos(payload.get("repositories_removed"))]
            gone = registry.uncover(inst_id, names)
            report.untracked += gone
            return f"{len(gone)} repositories no longer tracked"
        key = "repositories" if event == "installation" else "repositories_added"
        repos = _repos(payload.get(key))
        added = registry.cover(inst_id, repos, settings.tier, now)
        report.tracked += [name.lower() for name, _, _ in repos]
        return f"{len(repos)} repositories covered, {added} newly tracked"
    if event == "repository":
        repo = payload["repository"]
        name = repo["full_name"].lower()
        if action in ("renamed", "transferred"):
            old = _old_name(payload, repo, action)
            if old and old != name and _tracked(db, old):
                registry.moved(old, repo["full_name"], int(repo["id"]), repo["node_id"], now)
                return f"{old} is now {name}"
            return "not tracked under its old name"
        if action in GONE_REASONS:
            return f"marked gone: {registry.gone([name], GONE_REASONS[action], now)}"
        if action in ("publicized", "unarchived"):
            return f"back: {registry.back([name], now)}"
        return f"repository {action}: nothing to do"
    return f"{event}: nothing to do"


def _old_name(payload: dict, repo: dict, action: str) -> str | None:
    """The name before a rename (changes.repository.name.from) or a transfer
    (changes.owner.from.user|organization.login)."""
    changes = payload.get("changes") or {}
    owner, name = repo["full_name"].split("/")
    if action == "renamed":
        old = ((changes.get("repository") or {}).get("name") or {}).get("from")
        return f"{owner}/{old}".lower() if old else None
    source = (changes.get("owner") or {}).get("from") or {}
    login = (source.get("user") or source.get("organization") or {}).get("login")
    return f"{login}/{name}".lower() if login else None


def _tracked(db: Database, name: str) -> bool:
    return bool(db.one("SELECT 1 FROM tracked_repositories WHERE repository = %s", (name,)))
