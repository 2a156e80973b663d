"""The router: a pure function from a job spec, lane health and the time to a lane and why."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobstore.spec import JobSpec

INNGEST, ACTIONS, LOCAL = "inngest", "github_actions", "local"
LANES = (INNGEST, ACTIONS, LOCAL)


@dataclass(frozen=True)
class RoutingSettings:
    """The thresholds of the routing table (DESIGN.md §5)."""

    rollout_percent: float = 100.0
    default_lane: str = ACTIONS
    recent_hours: float = 24.0
    realtime_max_prs: int = 10
    inngest_max_items: int = 50
    bulk_items: int = 100
    large_repositories: frozenset[str] = frozenset()
    # A repository with at least this many pull requests is large (the size a job's spec
    # carries in params.pull_requests: the planner's probes see it)
    large_pull_requests: int = 5000
    # A scheduled job whose data is due (params.due: when its repository would pass its
    # freshness target) within this many seconds goes real-time, not to a batch on Actions
    due_within: float = 3600.0
    # Inngest is crowded when more jobs wait for it than this many per place it has (its
    # JOBSTORE_CAPACITY_INNGEST): scheduled work the table sent there goes to Actions
    # (batched) instead, so a fleet's refreshes never queue for hours behind a few places
    crowded_after: float = 10.0
    allow: frozenset[str] = frozenset()  # always in the hybrid rollout (lowercase names)
    deny: frozenset[str] = frozenset()  # never: always on the default lane


@dataclass(frozen=True)
class HealthSettings:
    """When a lane counts as down: its last `failures` dispatches within `window` seconds
    all failed. A job is sent to its fallback after `lane_tries` failed dispatches."""

    window: float = 600.0
    failures: int = 3
    lane_tries: int = 2


def lane_down(recent: Sequence[bool], config: HealthSettings) -> bool:
    """`recent` are a lane's latest dispatch outcomes (True = taken), newest first."""
    latest = list(recent[: config.failures])
    return len(latest) == config.failures and not any(latest)


@dataclass(frozen=True)
class Route:
    lane: str
    rule: str
    reason: str
    fallback_from: str | None = None
    priority: str | None = None  # set when a fallback raises it


def rollout_bucket(repository: str) -> int:
    """A stable bucket 0..9999 for a repository: unsigned, case-insensitive, seed-free."""
    digest = hashlib.sha256(repository.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def in_rollout(repository: str, percent: float) -> bool:
    return rollout_bucket(repository) < round(percent * 100)


def _table(spec: JobSpec, now: datetime, config: RoutingSettings) -> Route:
    name = spec.repository.lower()
    if name in config.deny:
        return Route(config.default_lane, "rollout", "denied in the rollout")
    if name not in config.allow and not in_rollout(spec.repository, config.rollout_percent):
        return Route(config.default_lane, "rollout", "not in hybrid rollout")
    since, until = spec.window(now)
    items = spec.estimated_items()
    fits_inngest = items is None or items <= config.inngest_max_items
    recent = timedelta(hours=config.recent_hours)
    if until is not None and now - until > recent:
        return Route(ACTIONS, "historical", "cost-effective bulk: window ended over 24 h ago")
    small_window = since is not None and until is not None and until - since <= recent
    few_prs = 0 < len(spec.pr_numbers) <= config.realtime_max_prs
    if (small_window or few_prs) and fits_inngest:
        return Route(INNGEST, "recent", "real-time: recent window or a few PRs")
    if spec.trigger == "manual" and fits_inngest:
        return Route(INNGEST, "manual", "someone is waiting")
    large = spec.repository.lower() in config.large_repositories or (
        size_of(spec) >= config.large_pull_requests
    )
    if (items is not None and items > config.bulk_items) or large:
        return Route(ACTIONS, "bulk", "bulk volume: many items or a large repository")
    if not fits_inngest:
        return Route(ACTIONS, "bulk", f"more than {config.inngest_max_items} items for Inngest")
    due = due_at(spec.params)
    if spec.trigger == "scheduled" and due is not None:
        left = (due - now).total_seconds()
        if left <= config.due_within:
            return Route(INNGEST, "due", f"its data is due in {max(left, 0) / 60:.0f} min")
    if spec.trigger in ("scheduled", "backfill"):
        return Route(ACTIONS, "no-urgency", f"{spec.trigger} work has no urgency")
    return Route(INNGEST, "small", "small work")


def due_at(params: Mapping[str, Any]) -> datetime | None:
    """When a job's data is due (`params.due`, set by the planner: when its repository
    would pass its freshness target), or None (not said, or not a zoned time)."""
    text = params.get("due")
    if not isinstance(text, str):
        return None
    try:
        due = datetime.fromisoformat(text)
    except ValueError:
        return None
    return due if due.tzinfo is not None else None


def size_of(spec: JobSpec) -> int:
    """The repository's pull requests, as the job's spec says (0: not said)."""
    size = spec.params.get("pull_requests")
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


MOVABLE = ("scheduled", "backfill")  # triggers whose work may leave a crowded Inngest


def decide(
    spec: JobSpec,
    now: datetime,
    config: RoutingSettings = RoutingSettings(),
    *,
    lane: str | None = None,
    capable: Collection[str] = LANES,
    down: Collection[str] = (),
    crowded: Mapping[str, str] | None = None,
    movable: bool = False,
) -> Route:
    """Chooses a lane; first matching rule wins, then capability and health are applied.

    `capable` are the lanes that can run this job type: the router never picks another.
    `down` are lanes currently failing dispatch; a job for one falls back (§5).
    `crowded` are lanes with more waiting than they start soon (and how many): scheduled
    or backfill work the table (or a `movable` explicit choice: the planner's) sent to a
    crowded Inngest goes to Actions instead; what a person or a webhook asked for stays.
    """
    route = Route(lane, "explicit", "operator's choice") if lane else _table(spec, now, config)
    crowd = (crowded or {}).get(INNGEST)
    if (
        crowd
        and route.lane == INNGEST
        and (route.rule != "explicit" or movable)
        and spec.trigger in MOVABLE
        and ACTIONS in capable
        and ACTIONS not in down
    ):
        route = Route(
            ACTIONS,
            "crowded",
            f"inngest crowded ({crowd}); was: {route.reason}"[:500],
            fallback_from=INNGEST,
        )
    if route.lane not in capable:
        substitute = next(x for x in (ACTIONS, INNGEST, LOCAL) if x in capable)
        route = Route(
            substitute,
            "capability",
            f"{spec.job_type} cannot run on {route.lane}",
            fallback_from=route.lane,
        )
    if route.lane not in down or route.rule == "explicit":
        return route
    if route.lane == INNGEST and ACTIONS in capable and ACTIONS not in down:
        return Route(ACTIONS, "fallback", "inngest down", fallback_from=INNGEST, priority="high")
    if route.lane == ACTIONS and INNGEST not in down:
        # Actions down: stay routed to it; the sweeper dispatches again later.
        return Route(ACTIONS, route.rule, route.reason + "; actions down, dispatch later")
    return Route(LOCAL, "fallback", f"{route.lane} down: run locally", fallback_from=route.lane)
