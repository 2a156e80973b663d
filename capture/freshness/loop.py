"""One pass of the freshness planner (`bin/plan --once`; `--forever` repeats it):
bootstrap newly tracked repositories, probe the due ones in batches, enqueue a whole
refresh for each that changed, mark the others fresh without a job. All within the API
budget, real-time work keeping its reserve."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

from capture.errors import CaptureError, RateLimited
from capture.fetch.comments import LISTINGS, newest_comment
from capture.freshness.contributors import recheck
from capture.freshness.probe import Asked, Probed, probe_with
from capture.freshness.registry import Registry
from capture.freshness.rules import (
    FreshnessSettings,
    Tracked,
    changed,
    comments_changed,
    decide,
    next_look,
    refresh_due,
    refreshes_affordable,
)
from capture.github.client import GitHub
from capture.settings import WebhookSettings
from capture.storage import EDITS_MOVE_NOTHING
from capture.webhooks.planner import webhook_pass
from capture.webhooks.riders import Riding
from jobstore import (
    GITHUB_EPOCH,
    MAX_DAYS,
    Ask,
    DatabaseRefused,
    Dispatcher,
    JobSpec,
    batchable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
GONE_REASON = "not found: deleted, made private, or no longer visible to our credentials"


@dataclass
class PassReport:
    """What one pass did."""

    bootstrapped: list[str] = field(default_factory=list)
    probed: int = 0
    probe_points: int = 0
    changed: list[str] = field(default_factory=list)
    fresh: int = 0
    missing: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # newly marked gone
    back: list[str] = field(default_factory=list)  # gone, and shown again
    moved: dict[str, str] = field(default_factory=dict)  # old name -> new name
    deferred: int = 0  # due, but left for a later pass (budget)
    refreshes: dict[str, str] = field(default_factory=dict)  # repository -> job id
    errors: list[str] = field(default_factory=list)
    reconciles: dict[str, str] = field(default_factory=dict)  # repository -> job id
    comment_changes: list[str] = field(default_factory=list)  # found by the comment probe
    comment_probes: int = 0  # repositories whose newest comment was read
    comment_probes_deferred: int = 0  # due one, left for a later pass (REST pace, budget)
    contributors_checked: int = 0
    contributors_renamed: int = 0
    skipped: bool = False  # another planner was running a pass
    delivered: int = 0  # probed changes found stored already (brought by webhooks)
    rode: int = 0  # webhook pull requests' files and commits stored by riding a probe
    probe_due: int = 0  # probed for being due (the others filled the query up)
    probe_due_webhooks: int = 0  # of those, repositories with healthy webhooks
    webhooks: dict | None = None  # the pass's webhook work (capture.webhooks.planner)
    bootstraps_done: int = 0  # whole history stored
    bootstraps_retried: int = 0  # a history backfill failed for good: tried again
    bootstraps_failed: int = 0  # failed `bootstrap_tries` times: reported, left alone

    def as_json(self) -> dict:
        return {**self.__dict__}


def budget_left(gh: GitHub, settings: FreshnessSettings) -> float:
    """Points the planner may spend now: every credential's headroom in the shared
    ledger, each one's real-time reserve left out."""
    return gh.session.pool.headroom("graphql", gh.session.now(), keep=settings.reserve)


def plan_once(
    registry: Registry,
    dispatcher: Dispatcher,
    gh: GitHub,
    now: datetime,
    settings: FreshnessSettings,
    webhooks: WebhookSettings | None = None,
) -> PassReport:
    """One pass over what is due: webhook work (with `webhooks`), bootstraps, refreshes
    of changes found earlier, probes (in flight together, 100 repositories a query); each
    repository passed over gets the time it is next due, so the next pass reads only what
    is due then."""
    with registry.planning() as mine:
        if not mine:  # another planner's pass is running: its work, not ours
            return PassReport(skipped=True)
        return _pass(registry, dispatcher, gh, now, settings, webhooks)


def _pass(
    registry: Registry,
    dispatcher: Dispatcher,
    gh: GitHub,
    now: datetime,
    settings: FreshnessSettings,
    webhooks: WebhookSettings | None = None,
) -> PassReport:
    report = PassReport()
    registry.sync_tiers(settings.tiers)
    if webhooks is not None:  # first: repositories an installation added are bootstrapped
        hooks = webhook_pass(registry.db, registry, dispatcher, gh.session.pool.app, now, webhooks)
        report.webhooks = {k: v for k, v in hooks.__dict__.items() if k != "errors"}
        report.errors += hooks.errors
    tracked = registry.load(dispatcher.store.active, now, limit=settings.load_limit)
    by_name = {t.repository: t for t in tracked}
    progress = _check_bootstraps(registry, dispatcher, now, settings, report)
    room = min(settings.bootstrap_per_pass, settings.bootstrap_running - progress)
    decided = decide(tracked, now, settings, budget_left(gh, settings), room)
    report.deferred = decided.waiting
    report.probe_due = decided.probe_due
    report.probe_due_webhooks = sum(
        by_name[r].webhooks(now) for r in decided.probe[: decided.probe_due]
    )
    for repository in decided.again:
        _recent(dispatcher, registry, repository, now, settings)
        report.bootstrapped.append(repository)
    bootstrap(dispatcher, registry, decided.bootstrap, now, settings, by_name)
    report.bootstrapped += decided.bootstrap
    _refresh_all(dispatcher, registry, [by_name[r] for r in decided.refresh], now, settings, report)
    asked = [Asked(name, by_name[name].node_id) for name in decided.probe]
    chunks = [
        asked[start : start + settings.probe_batch]
        for start in range(0, len(asked), settings.probe_batch)
    ]
    spent = gh.meter.graphql_points
    # the last query (the one with room) carries waiting webhook pull requests' details
    ride = _riders(registry, now) if webhooks is not None and chunks else None
    items = [(c, ride if i == len(chunks) - 1 else None) for i, c in enumerate(chunks)]
    for (chunk, riding), answer in _in_flight(_probe, gh, items, settings.probes_in_flight):
        if isinstance(answer, CaptureError) and riding is not None:
            riding.give_back()
        if isinstance(answer, RateLimited):  # the reserve is for real-time work: stop here
            report.deferred += len(chunk)
            if str(answer) not in report.errors:
                report.errors.append(str(answer))
            continue
        if isinstance(answer, CaptureError):
            report.errors.append(f"probe of {len(chunk)} repositories failed: {answer}")
            registry.probed([(a.repository, None, str(answer)[:200]) for a in chunk], now)
            continue
        probed, nodes = answer
        if riding is not None:
            report.rode += riding.store(gh, nodes, now, report.errors)
        _answered(registry, dispatcher, gh, by_name, probed, now, settings, report)
    report.probe_points = gh.meter.graphql_points - spent
    if report.comment_probes_deferred:
        log.warning(
            "%d comment probes left for a later pass (REST pace or budget; %d read)",
            report.comment_probes_deferred,
            report.comment_probes,
        )
    _reconcile_all(registry, dispatcher, gh, now, settings, report)
    _contributors(registry, gh, now, settings, report)
    _send_batches(dispatcher, report, now)
    acted = set(report.bootstrapped) | set(report.refreshes) | set(decided.probe)
    acted |= set(report.moved.values())
    waiting = set(decided.waiting_names)
    registry.reschedule(
        (t.repository, next_look(t, now, settings.tiers))
        for t in tracked
        if t.repository not in acted and t.repository not in waiting and not is_spare(t, now)
    )
    return report


def _probe(
    gh: GitHub, item: tuple[list[Asked], Riding | None]
) -> tuple[list[Probed], list[dict | None]]:
    chunk, riding = item
    return probe_with(gh, chunk, riding.node_ids if riding is not None else None)


def _riders(registry: Registry, now: datetime) -> Riding | None:
    """Waiting webhook pull requests claimed to ride this pass's probe query (None: none,
    or the claim failed: they wait for their apply jobs)."""
    riding = Riding(registry.db)
    try:
        return riding if riding.claim(now) else None
    except DatabaseRefused as exc:
        log.warning("no pull requests ride the probe this pass (%s)", exc)
        return None


def _contributors(
    registry: Registry, gh: GitHub, now: datetime, settings: FreshnessSettings, report: PassReport
) -> None:
    """Known contributors' logins re-read on their slow cadence, within what the budget
    leaves (a failure is reported; the pass goes on)."""
    queries = min(settings.contributor_queries, int(budget_left(gh, settings)))
    if queries <= 0:
        return
    try:
        checked, renamed = recheck(registry, gh, now, settings.contributors_every, queries)
    except CaptureError as exc:
        report.errors.append(f"contributor logins not re-read: {exc}")
        return
    report.contributors_checked, report.contributors_renamed = checked, renamed


def is_spare(t: Tracked, now: datetime) -> bool:
    """Loaded only as a candidate to fill up a probe query: not due, nothing to write."""
    return t.next_due is not None and t.next_due > now


def _in_flight(
    ask: Callable[[GitHub, T], R], gh: GitHub, items: list[T], in_flight: int
) -> Iterator[tuple[T, R | CaptureError]]:
    """`ask(gh, item)` for each item (its answer, or the error it met), in order, up to
    `in_flight` at once (the session's concurrency caps requests per credential)."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(in_flight, len(items)))) as pool:
        futures = [pool.submit(ask, gh, item) for item in items]
        for item, future in zip(items, futures, strict=True):
            try:
                yield item, future.result()
            except CaptureError as exc:
                yield item, exc


def _answered(
    registry: Registry,
    dispatcher: Dispatcher,
    gh: GitHub,
    by_name: dict[str, Tracked],
    answers: list[Probed],
    now: datetime,
    settings: FreshnessSettings,
    report: PassReport,
) -> None:
    """One probe query's answers: fresh ones marked so, changes refreshed when due;
    repositories GitHub moved followed, those it no longer shows marked gone."""
    answers = _followed(registry, dispatcher, by_name, answers, now, report)
    report.probed += len(answers)
    errors = [(a.repository, a.newest_updated_at, a.missing and "not found") for a in answers]
    sizes = {a.repository: a.pull_requests for a in answers if a.pull_requests is not None}
    registry.probed([(r, n, e or None) for r, n, e in errors], now, sizes)
    missing = [a.repository for a in answers if a.missing]
    report.missing += missing
    # after the probe's own bookkeeping: a gone one is next looked at in GONE_RECHECK
    newly = registry.gone(missing, GONE_REASON, now)
    for name in newly:
        log.warning("%s is gone on GitHub (%s): no longer probed or refreshed", name, GONE_REASON)
    report.gone += newly
    answers = [a for a in answers if not by_name[a.repository].gone or a.missing]
    moved = [
        by_name[a.repository]
        for a in answers
        if not a.missing and changed(a.newest_updated_at, by_name[a.repository].watermark)
    ]
    # A webhook repository whose newest change GitHub shows is stored (it came by
    # webhook, after the reconciler last confirmed its deliveries): nothing to refresh.
    hooked = [
        (a.repository, a.repo_id, a.newest_number, a.newest_updated_at)
        for a in answers
        if by_name[a.repository].webhooks(now)
        and a.repo_id is not None
        and a.newest_number is not None
        and by_name[a.repository] in moved
    ]
    delivered = registry.delivered(hooked) if hooked else set()
    if delivered:
        moved = [t for t in moved if t.repository not in delivered]
        registry.looked(sorted(delivered), now)
        report.delivered += len(delivered)
    moved_names = {t.repository for t in moved}
    fresh = [
        a.repository
        for a in answers
        if not a.missing and a.repository not in moved_names and a.repository not in delivered
    ]
    # A comment created, edited or deleted on a webhook repository comes by webhook (the
    # reconciler confirms none was missed): no comment probe for it.
    unhooked = [by_name[r] for r in fresh if not by_name[r].webhooks(now)]
    if settings.comment_probes != "no" and unhooked:
        needed = settings.comment_probes == "yes" or registry.seen(EDITS_MOVE_NOTHING)
        due = _comment_probe_due(unhooked, now, settings, needed)
        chosen = due[: comment_probes_affordable(gh, settings, report.comment_probes)]
        report.comment_probes += len(chosen)
        later = {t.repository for t in due[len(chosen) :]}
        report.comment_probes_deferred += len(later)
        if needed:  # fresh only once its comments are read too: due again next pass
            fresh = [r for r in fresh if r not in later]
        commented, failed = _comment_probes(gh, chosen, settings)
        report.comment_changes += [t.repository for t in commented]
        report.errors += [f"comment probe of {r} failed: {e}" for r, e in failed.items()]
        registry.probed([(r, None, e[:200]) for r, e in failed.items()], now)
        registry.comments_probed([t.repository for t in chosen if t.repository not in failed], now)
        moved += commented
        skip = {t.repository for t in commented} | set(failed)
        fresh = [r for r in fresh if r not in skip]
    registry.fresh(fresh, now)
    report.fresh += len(fresh)
    report.changed += [t.repository for t in moved]
    now_due = [t for t in moved if refresh_due(t, now, settings.tiers)]
    registry.pending([t.repository for t in moved if t not in now_due], now)
    _refresh_all(dispatcher, registry, now_due, now, settings, report, gh)


def _comment_probe_due(
    unchanged: list[Tracked], now: datetime, settings: FreshnessSettings, needed: bool
) -> list[Tracked]:
    """Those whose newest comment is due to be read, longest unread first: all of them
    where a probe cannot see an edit (`needed`: GitHub was seen not to move a pull request
    for one, or `yes`); else each at most every `comment_probe_every` (where edits move
    pull requests, the probe sees them anyway)."""
    every = settings.comment_probe_every
    due = [
        t
        for t in unchanged
        if needed or t.comments_probed_at is None or now - t.comments_probed_at >= every
    ]
    return sorted(due, key=lambda t: (t.comments_probed_at is not None, t.comments_probed_at))


def comment_probes_affordable(gh: GitHub, settings: FreshnessSettings, done: int) -> int:
    """Repositories whose comments the pass may still read: a minute's REST pace of the
    credentials (a pass waits out no more) and the hour's REST budget above the real-time
    reserve, less the `done` already read this pass (each reads every listing)."""
    pool = gh.session.pool
    points = pool.headroom("core", gh.session.now(), keep=settings.reserve)
    minute = pool.minute_pace("core")
    if minute is not None:
        points = min(points, minute - done * len(LISTINGS))
    return max(0, int(points) // len(LISTINGS))


def _comment_probes(
    gh: GitHub, unchanged: list[Tracked], settings: FreshnessSettings
) -> tuple[list[Tracked], dict[str, str]]:
    """Of repositories whose pull requests did not move, those with a comment created or
    edited since the last refresh (edits that did not bump their pull request), and the
    ones whose comment probe failed (repository -> error)."""
    found, failed = [], {}
    names = [t.repository for t in unchanged]
    answers = _in_flight(newest_comment, gh, names, settings.probes_in_flight)
    for tracked, (_, answer) in zip(unchanged, answers, strict=True):
        if isinstance(answer, CaptureError):
            failed[tracked.repository] = str(answer)
        elif comments_changed(answer, tracked):
            found.append(tracked)
    return found, failed


def _reconcile_all(
    registry: Registry,
    dispatcher: Dispatcher,
    gh: GitHub,
    now: datetime,
    settings: FreshnessSettings,
    report: PassReport,
) -> None:
    """Repositories due for reconciliation (their recently active pull requests whole,
    so deletions that moved nothing are seen), as far as the budget goes."""
    affordable = refreshes_affordable(budget_left(gh, settings), settings)
    limit = min(settings.reconciles_per_pass, affordable)
    if limit <= 0 or settings.reconcile == "never":
        return
    active = now - timedelta(days=settings.reconcile_days)
    always = settings.reconcile == "always"
    for repository in registry.reconcile_due(now, active, limit, always):
        spec = JobSpec.create(
            "repository-refresh",
            repository,
            trigger="scheduled",
            priority="low",
            dedupe_key=f"repository-reconcile:{repository}",
            params={"reconcile": settings.reconcile_days},
        )
        submitted = dispatcher.submit(
            spec,
            now,
            settings.refresh_lane,
            reason=f"reconcile: pull requests active in the last {settings.reconcile_days} "
            "days, whole (deletions that moved nothing)",
        )
        report.reconciles[repository] = str(submitted.job.id)


def _followed(
    registry: Registry,
    dispatcher: Dispatcher,
    by_name: dict[str, Tracked],
    answers: list[Probed],
    now: datetime,
    report: PassReport,
) -> list[Probed]:
    """Renames and transfers followed (registry, stored rows, job views), gone ones shown
    again unmarked; the answers under each repository's current name."""
    found = []
    for a in answers:
        if a.missing or not a.moved or a.name is None or a.repo_id is None or a.node_id is None:
            found.append(a)
            continue
        try:
            kind = registry.moved(a.repository, a.name, a.repo_id, a.node_id, now)
        except DatabaseRefused as exc:  # one bad record: reported, the pass goes on
            problem = f"{a.repository} moved to {a.name} on GitHub, not followed: {exc}"
            log.error("%s", problem.splitlines()[0])
            report.errors.append(problem.splitlines()[0][:300])
            continue
        dispatcher.store.repository_moved(a.repository, a.name, now)
        log.warning("%s was %s to %s on GitHub: followed", a.repository, kind, a.name)
        report.moved[a.repository] = a.name
        by_name[a.name] = replace(by_name.pop(a.repository), repository=a.name, node_id=a.node_id)
        found.append(replace(a, repository=a.name))
    # Tracked under an old name and the new one, both in this query: one answer each.
    unique = {a.repository: a for a in reversed(found)}
    found = [a for a in found if unique[a.repository] is a]
    registry.identified(
        (a.repository, a.repo_id, a.node_id)
        for a in found
        if a.node_id is not None
        and a.repo_id is not None
        and by_name[a.repository].node_id != a.node_id
    )
    back = registry.back(
        [a.repository for a in found if not a.missing and by_name[a.repository].gone], now
    )
    for name in back:
        by_name[name] = replace(by_name[name], gone=False)
    report.back += back
    return found


def _send_batches(dispatcher: Dispatcher, report: PassReport, now: datetime) -> None:
    """The pass's small refreshes for Actions, sent now in batches (one run each) rather
    than left for the sweeper's next pass."""
    store, settings = dispatcher.store, dispatcher.settings
    jobs = [store.get(job_id) for job_id in report.refreshes.values()]
    riders = [job for job in jobs if job.status.value == "routed" and batchable(job, settings)]
    if riders:
        dispatcher.send_batches(riders, now)


def _refresh_all(
    dispatcher: Dispatcher,
    registry: Registry,
    chosen: list[Tracked],
    now: datetime,
    settings: FreshnessSettings,
    report: PassReport,
    gh: GitHub | None = None,
) -> None:
    """Refreshes `chosen` (most overdue first) as far as the budget goes; the rest stay
    pending for a later pass."""
    affordable = (
        len(chosen) if gh is None else refreshes_affordable(budget_left(gh, settings), settings)
    )
    enqueued = []
    for tracked in chosen[:affordable]:
        job_id = refresh(dispatcher, tracked, now, settings)
        enqueued.append((tracked.repository, job_id))
        report.refreshes[tracked.repository] = str(job_id)
    left = chosen[affordable:]
    registry.pending([t.repository for t in left], now)
    report.deferred += len(left)
    registry.refreshing(enqueued, now)


def on_request(
    registry: Registry, spec: JobSpec, now: datetime, settings: FreshnessSettings
) -> bool:
    """A person asked for work on a repository: it is hot for a while (if tracked)."""
    if spec.trigger != "manual":
        return False
    reason = f"{spec.job_type} asked for by a person"
    return registry.promote(spec.repository, now + settings.promote_for, reason)


def refresh(
    dispatcher: Dispatcher, tracked: Tracked, now: datetime, settings: FreshnessSettings
) -> object:
    """A whole refresh of what changed since the watermark: one active per repository.
    Its window (watermark to now) lets the router choose: recent changes go real-time."""
    since = min(tracked.watermark or now, now - timedelta(seconds=1))
    since = max(since, now - timedelta(days=MAX_DAYS))
    comments = tracked.comments_watermark or tracked.watermark
    spec = JobSpec.create(
        "repository-refresh",
        tracked.repository,
        since=since,
        until=now,
        trigger="scheduled",
        priority="high" if tracked.effective_tier(now) == "hot" else "normal",
        dedupe_key=f"repository-refresh:{tracked.repository}",
        # where the comment listings start (the refresh need not read it)
        params={"tier": tracked.effective_tier(now)}
        | ({"due": due.isoformat()} if (due := breach_at(tracked, now, settings)) else {})
        | ({"comments_since": comments.isoformat()} if comments else {})
        | ({"pull_requests": tracked.pull_requests} if tracked.pull_requests else {})
        | shared(tracked),
    )
    submitted = dispatcher.submit(spec, now, settings.refresh_lane)
    return submitted.job.id


def breach_at(tracked: Tracked, now: datetime, settings: FreshnessSettings) -> datetime | None:
    """When the repository's data would pass its tier's target (None: never captured):
    a refresh waiting to ride a batch is sent before then."""
    if tracked.fresh_as_of is None:
        return None
    return tracked.fresh_as_of + settings.tiers[tracked.effective_tier(now)].target


def shared(tracked: Tracked | None) -> dict[str, str]:
    """The params that make a repository's jobs take turns within its workspace."""
    return {"workspace": tracked.workspace} if tracked and tracked.workspace else {}


def bootstrap(
    dispatcher: Dispatcher,
    registry: Registry,
    repositories: str | Sequence[str],
    now: datetime,
    settings: FreshnessSettings,
    by_name: Mapping[str, Tracked] | None = None,
) -> None:
    """Newly tracked repositories: the last days first on the fast lane, then the whole
    history (from 2008, GitHub's first year), newest first, as a backfill on the bulk
    lane. Both are in the audit trail; a pass's bootstraps are enqueued together."""
    names = [repositories] if isinstance(repositories, str) else list(repositories)
    if not names:
        return
    by_name = by_name or {}
    asks: list[Ask] = []
    for name in names:
        asks += [
            _recent_ask(name, settings, by_name.get(name)),
            _history_ask(name, now, settings, by_name.get(name)),
        ]
    done = dispatcher.submit_many(asks, now)
    recent, history = done[0::2], done[1::2]
    registry.refreshing([(name, s.job.id) for name, s in zip(names, recent, strict=True)], now)
    registry.bootstrapped(
        [(n, r.job.id, h.job.id) for n, r, h in zip(names, recent, history, strict=True)], now
    )


def _history_ask(
    repository: str,
    now: datetime,
    settings: FreshnessSettings,
    tracked: Tracked | None,
    tries: int = 0,
) -> Ask:
    until = now - timedelta(days=settings.bootstrap_days)
    history = JobSpec.create(
        "historical-sync",
        repository,
        since=GITHUB_EPOCH,
        until=until,
        trigger="backfill",
        priority="low",
        # one per repository while it runs, whenever a pass (or a second planner, after a
        # pass that died before recording it) asks
        dedupe_key=f"bootstrap-history:{repository}",
        params={"bootstrap": "history"} | ({"try": tries + 1} if tries else {}) | shared(tracked),
    )
    again = f" (try {tries + 1} of {settings.bootstrap_tries})" if tries else ""
    return Ask(
        history,
        settings.bulk_lane,
        f"bootstrap: whole history before the last {settings.bootstrap_days} days, "
        f"newest first, as a backfill{again}",
    )


CHECKED_PER_PASS = 500  # started bootstraps looked at a pass (the longest unchecked first)


def _check_bootstraps(
    registry: Registry,
    dispatcher: Dispatcher,
    now: datetime,
    settings: FreshnessSettings,
    report: PassReport,
) -> int:
    """Started bootstraps whose jobs ended: done when the history completed (its index ran
    from 2008, so the repository's whole history is stored), tried again when it failed
    for good, failed (reported) after `bootstrap_tries`. Returns how many stay in
    progress."""
    rows = registry.bootstrapping(CHECKED_PER_PASS)
    if not rows:
        return 0
    jobs = [UUID(str(j)) for r in rows for j in r["bootstrap_jobs"]]
    states = dispatcher.store.heads.head_states(jobs)
    looked, done, failed, again = [], [], {}, {}
    for row in rows:
        repository, ids = row["repository"], [UUID(str(j)) for j in row["bootstrap_jobs"]]
        history = states.get(ids[-1]) if ids else None
        status = history[1] if history else "lost"
        if status == "completed":
            done.append(repository)
        elif status in ("failed", "cancelled", "lost"):
            tries = row["bootstrap_tries"] + 1
            if tries >= settings.bootstrap_tries:
                failed[repository] = f"history backfill {status} {tries} times"
                report.errors.append(f"bootstrap of {repository} failed: {failed[repository]}")
            else:
                tracked = Tracked(repository, "cold", workspace=row["workspace"])
                ask = _history_ask(repository, now, settings, tracked, tries)
                again[repository] = dispatcher.submit_many([ask], now)[0].job.id
        else:
            looked.append(repository)
    if rows:
        registry.bootstrap_checked(now, looked, done, failed, again)
    report.bootstraps_done += len(done)
    report.bootstraps_failed += len(failed)
    report.bootstraps_retried += len(again)
    if len(rows) < CHECKED_PER_PASS:
        return len(looked) + len(again)
    return registry.bootstrap_progress()["in_progress"]


def _recent(
    dispatcher: Dispatcher,
    registry: Registry,
    repository: str,
    now: datetime,
    settings: FreshnessSettings,
) -> object:
    submitted = dispatcher.submit_many([_recent_ask(repository, settings, None)], now)[0]
    registry.refreshing([(repository, submitted.job.id)], now)
    return submitted.job.id


def _recent_ask(repository: str, settings: FreshnessSettings, tracked: Tracked | None) -> Ask:
    spec = JobSpec.create(
        "repository-refresh",
        repository,
        days=settings.bootstrap_days,
        trigger="scheduled",
        priority="high",
        dedupe_key=f"repository-refresh:{repository}",
        params={"bootstrap": "recent"} | shared(tracked),
    )
    reason = f"bootstrap: the last {settings.bootstrap_days} days first, on the fast lane"
    return Ask(spec, settings.fast_lane, reason, movable=True)
