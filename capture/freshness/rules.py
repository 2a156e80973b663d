"""The freshness planner's decisions, pure: which tracked repositories need their
bootstrap, which are due for a change probe and in what order, what a probe's answer
means. Time comes in as an argument."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

TIERS = ("hot", "warm", "cold")
LOOK_AGAIN = timedelta(minutes=1)  # the soonest a repository passed over is looked at again
GONE_RECHECK = timedelta(days=1)  # a gone repository is probed this rarely, to see it back
# An installation whose deliveries the reconciler confirmed this recently: its
# repositories' webhooks are healthy (probed at their target, as a safety net).
WEBHOOKS_HEALTHY = timedelta(minutes=30)
# Where they are, deletions come by webhook too: its reconciliation (pull requests
# active lately read whole) is a daily safety net, not a per-interval one.
WEBHOOK_RECONCILE = timedelta(days=1)


@dataclass(frozen=True)
class Tier:
    """A tier's target (data never older than this), when to probe (at a third of it),
    and when to refresh a change a probe found (at two thirds): the changes that arrive
    in between are coalesced into that one refresh, and the last third is left for it."""

    name: str
    target: timedelta
    probe_after: timedelta
    refresh_after: timedelta

    @classmethod
    def of(cls, name: str, target: timedelta) -> Tier:
        return cls(name, target, target / 3, target * 2 / 3)


DEFAULT_TIERS: dict[str, Tier] = {
    "hot": Tier.of("hot", timedelta(minutes=15)),
    "warm": Tier.of("warm", timedelta(hours=6)),
    "cold": Tier.of("cold", timedelta(hours=24)),
}


@dataclass(frozen=True)
class FreshnessSettings:
    tiers: Mapping[str, Tier] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    promote_for: timedelta = timedelta(hours=2)  # a person's request: hot for this long
    bootstrap_days: int = 30  # a new repository: these days first, on the fast lane
    # Bootstrap pacing: at most this many started a pass, and at most `bootstrap_running`
    # in progress at once (the lanes' capacity keeps the rest of the work queued), hot
    # tier first; a history backfill that fails for good is tried `bootstrap_tries` times.
    bootstrap_per_pass: int = 50
    bootstrap_running: int = 200
    bootstrap_tries: int = 3
    fast_lane: str = "inngest"
    bulk_lane: str = "github_actions"
    refresh_lane: str | None = None  # None: the router decides each refresh
    probe_batch: int = 100  # repositories per probe query (aliases; about 1 point)
    probes_in_flight: int = 4  # probe queries sent at once
    load_limit: int = 5000  # due repositories a pass reads (the rest wait a pass)
    refresh_points: float = 2.0  # the points a refresh is expected to spend
    reserve: int = 500  # points of the hour's budget kept for real-time work
    # Known contributors' logins re-read (renamed users), each this often, at most
    # `contributor_queries` queries of 100 a pass (about a point each).
    contributors_every: timedelta = timedelta(days=7)
    contributor_queries: int = 2
    # Comments edited or deleted where that does not move their pull request (GitHub's
    # docs do not say whether it does): the repository-level comment listings probed
    # with each probe (conditional reads, free while unchanged), and the pull requests
    # active in the last `reconcile_days` captured whole at the tier's refresh interval
    # (deletions), at most `reconciles_per_pass` repositories a pass; `reconcile`: auto
    # (once GitHub was seen not to move a pull request for an edit), always or never.
    # `comment_probes`: yes (with every probe), no, or auto: with every probe once GitHub
    # was seen not to move a pull request for an edit, else every `comment_probe_every`
    comment_probes: str = "auto"
    comment_probe_every: timedelta = timedelta(days=1)
    reconcile: str = "auto"
    reconcile_days: int = 2
    reconciles_per_pass: int = 50


@dataclass(frozen=True)
class Tracked:
    """A tracked repository as the planner sees it."""

    repository: str
    tier: str
    bootstrap: str = "pending"
    promoted_until: datetime | None = None
    fresh_as_of: datetime | None = None
    probed_at: datetime | None = None
    changed_at: datetime | None = None  # when a refresh (or the bootstrap) was last enqueued
    pending: bool = False  # a probe found changes not refreshed yet
    watermark: datetime | None = None
    refreshing: bool = False  # a refresh job for it is active
    next_due: datetime | None = None  # when the planner was to look at it next
    node_id: str | None = None  # GitHub's, once a probe learned it: probed by it
    gone: bool = False  # GitHub did not show it: probed only every GONE_RECHECK
    comments_watermark: datetime | None = None  # every comment updated before it is stored
    comments_probed_at: datetime | None = None  # its newest comment last read
    webhooks_checked_at: datetime | None = None  # its installation's last reconciliation
    workspace: str | None = None  # whose it is: its jobs take turns with other workspaces'
    pull_requests: int | None = None  # how many it has, as the last probe saw
    added_at: datetime | None = None

    def webhooks(self, now: datetime) -> bool:
        """Covered by an installation whose deliveries were confirmed lately."""
        checked = self.webhooks_checked_at
        return checked is not None and now - checked <= WEBHOOKS_HEALTHY

    def effective_tier(self, now: datetime) -> str:
        if self.promoted_until is not None and self.promoted_until > now:
            return "hot"
        return self.tier

    def age(self, now: datetime) -> timedelta | None:
        return None if self.fresh_as_of is None else now - self.fresh_as_of


@dataclass(frozen=True)
class Decisions:
    bootstrap: list[str]
    probe: list[str]  # most overdue first
    waiting: int  # due, but left for a later pass (budget)
    again: list[str] = field(default_factory=list)  # bootstraps whose first refresh failed
    refresh: list[str] = field(default_factory=list)  # changes found earlier, due now
    waiting_names: list[str] = field(default_factory=list)  # those left for a later pass
    probe_due: int = 0  # of `probe`, the first this many are due (the rest fill the query)


def urgency(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> float:
    """How far into its target the repository's data is (1.0: at the target); a gone
    repository has no target."""
    if t.gone:
        return 0.0
    tier = tiers[t.effective_tier(now)]
    age = t.age(now)
    return float("inf") if age is None else age / tier.target


def is_due(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> bool:
    """Due for a probe: probeable, and its data past `probe_after`; gone, and not probed
    for GONE_RECHECK."""
    if t.gone:
        return t.probed_at is None or now - t.probed_at >= GONE_RECHECK
    if not is_probeable(t):
        return False
    age, tier = t.age(now), tiers[t.effective_tier(now)]
    if t.webhooks(now):  # changes arrive by webhook: a probe at the target is the net
        looked = last_look(t)
        stale = looked is None or now - looked >= tier.target
        return stale or age is None or age >= tier.refresh_after
    return age is None or age >= tier.probe_after


def refresh_due(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> bool:
    """A change is known (a probe found it, or one just did) and the data is old enough
    to refresh: past `refresh_after`, so later changes are coalesced into this refresh."""
    if t.gone or t.refreshing or t.bootstrap == "pending" or t.watermark is None:
        return False
    age = t.age(now)
    return age is None or age >= tiers[t.effective_tier(now)].refresh_after


TIER_ORDER = {"hot": 0, "warm": 1, "cold": 2}


def bootstraps(
    tracked: Iterable[Tracked], now: datetime, room: int, settings: FreshnessSettings
) -> list[str]:
    """The pending bootstraps this pass starts: at most `room` (what the pacing allows)
    and what the budget affords (a first refresh each), hot tier first, then the longest
    tracked."""
    pending = [t for t in tracked if t.bootstrap == "pending" and not t.gone]
    pending.sort(
        key=lambda t: (
            TIER_ORDER.get(t.effective_tier(now), 3),
            t.added_at or now,
            t.repository,
        )
    )
    return [t.repository for t in pending[: max(0, room)]]


def decide(
    tracked: Iterable[Tracked],
    now: datetime,
    settings: FreshnessSettings,
    budget: float,
    bootstrap_room: int | None = None,
) -> Decisions:
    """What this pass does, within `budget` points (what the hour has left above the
    real-time reserve): bootstraps first (at most `bootstrap_room`), then probes, most
    overdue first."""
    tracked = list(tracked)
    room = settings.bootstrap_per_pass if bootstrap_room is None else bootstrap_room
    room = min(room, int(max(0.0, budget) // max(settings.refresh_points, 0.1)))
    bootstrap = bootstraps(tracked, now, room, settings)
    budget -= len(bootstrap) * settings.refresh_points
    again = sorted(t.repository for t in tracked if needs_first_refresh(t, now, settings.tiers))
    pending_refresh = [t for t in tracked if t.pending and refresh_due(t, now, settings.tiers)]
    pending_refresh.sort(key=lambda t: (-urgency(t, now, settings.tiers), t.repository))
    refresh = pending_refresh[: refreshes_affordable(budget, settings)]
    budget -= len(refresh) * settings.refresh_points
    due = [t for t in tracked if is_due(t, now, settings.tiers)]
    due.sort(key=lambda t: (-urgency(t, now, settings.tiers), t.repository))
    affordable = max(0, int(budget)) * settings.probe_batch
    chosen = [t.repository for t in due[:affordable]]
    due_count = len(chosen)
    # A probe query costs the same for 1 repository as for 100: the last one is filled up
    # with the repositories nearest to being due, which keeps them fresh for free.
    room = -len(chosen) % settings.probe_batch
    if chosen and room:
        taken = set(chosen)
        spare = [t for t in tracked if is_probeable(t) and t.repository not in taken]
        # riders first: where webhooks are healthy, the probe is a safety net that needs
        # no query of its own when another's has room
        spare.sort(
            key=lambda t: (
                not rides(t, now, settings.tiers),
                -urgency(t, now, settings.tiers),
                t.repository,
            )
        )
        chosen += [t.repository for t in spare[:room]]
    refreshed = [t.repository for t in refresh]
    left = [t.repository for t in due[affordable:]] + [
        t.repository for t in pending_refresh[len(refresh) :]
    ]
    return Decisions(
        bootstrap,
        chosen,
        max(0, len(due) - affordable),
        again,
        refreshed,
        waiting_names=left,
        probe_due=due_count,
    )


def is_probeable(t: Tracked) -> bool:
    """Bootstrapped, with a watermark to compare with, no refresh under way, and no change
    known already (a known change waits for its refresh; probing it again tells nothing)."""
    return (
        t.bootstrap != "pending"
        and not t.refreshing
        and not t.pending
        and t.watermark is not None
        and not t.gone
    )


def rides(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> bool:
    """A repository with healthy webhooks past two thirds of its probe interval (its
    target): probed in the first query that others make, or at its target by its own."""
    if not t.webhooks(now) or not is_probeable(t):
        return False
    looked = last_look(t)
    return looked is None or now - looked >= tiers[t.effective_tier(now)].refresh_after


def last_look(t: Tracked) -> datetime | None:
    """When GitHub was last looked at for the repository: its last probe, or the refresh
    (the bootstrap's, at first) enqueued last, which read it whole."""
    if t.probed_at is None or (t.changed_at is not None and t.changed_at > t.probed_at):
        return t.changed_at or t.probed_at
    return t.probed_at


def needs_first_refresh(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> bool:
    """Bootstrapped, but its first refresh ended without a watermark (it failed): tried
    again, at most once per target period."""
    if t.gone or t.bootstrap == "pending" or t.watermark is not None or t.refreshing:
        return False
    return t.changed_at is None or now - t.changed_at >= tiers[t.effective_tier(now)].target


def next_look(t: Tracked, now: datetime, tiers: Mapping[str, Tier]) -> datetime:
    """When the planner needs to look at a repository it has nothing to do for now:
    the first moment a rule above could act on it (never before `now` plus a minute, so
    one the rules leave alone does not come back every pass)."""
    tier = tiers[t.effective_tier(now)]
    if t.gone:
        at = (t.probed_at or now) + GONE_RECHECK
    elif t.bootstrap == "pending":
        at = now
    elif t.refreshing:
        at = now + tier.target
    elif t.pending:
        at = (t.fresh_as_of or now) + tier.refresh_after
    elif t.watermark is None:
        at = (t.changed_at or now) + tier.target
    elif t.webhooks(now):  # from two thirds of its probe interval it rides others' queries
        at = min(
            (t.fresh_as_of or now) + tier.refresh_after,
            (last_look(t) or now) + tier.refresh_after,
        )
    else:
        at = (t.fresh_as_of or now) + tier.probe_after
    return max(at, now + LOOK_AGAIN)


def comments_changed(newest_comment: datetime | None, t: Tracked) -> bool:
    """Whether the repository's newest comment update is newer than what refreshes have
    stored of comments (before the first such refresh: than the pull request watermark)."""
    if newest_comment is None:
        return False
    bound = t.comments_watermark or t.watermark
    return bound is None or newest_comment > bound


def changed(newest_updated_at: datetime | None, watermark: datetime | None) -> bool:
    """Whether a probe's newest pull request update is newer than what is stored whole."""
    if newest_updated_at is None:  # no pull requests at all
        return False
    return watermark is None or newest_updated_at > watermark


def refreshes_affordable(budget: float, settings: FreshnessSettings) -> int:
    return max(0, int(budget // settings.refresh_points))
