"""The routing table's precedence, rollout hash, capability and fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobstore.routing import RoutingSettings, decide, due_at, in_rollout, rollout_bucket
from jobstore.spec import JobSpec

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
OLD = {"since": NOW - timedelta(days=60), "until": NOW - timedelta(days=30)}


def spec(**kw) -> JobSpec:
    base = {"job_type": "pr-reviews", "repository": "acme/widgets"}
    return JobSpec.create(**{**base, **kw})


BULK = ("github_actions", "bulk")
QUIET = ("github_actions", "no-urgency")
# when a refresh's data would pass its freshness target (the planner's params.due)
SOON, LATE = (NOW + timedelta(minutes=5)).isoformat(), (NOW + timedelta(hours=3)).isoformat()
PAST = (NOW - timedelta(minutes=5)).isoformat()
CROWDED = {"crowded": {"inngest": "over 50 jobs waiting for its 5 places"}}
MOVED = ("github_actions", "crowded")
CASES = [
    # (spec fields, decide kwargs, config, expected lane, expected rule)
    ({"days": 1}, {"lane": "local"}, {}, "local", "explicit"),
    ({"days": 1}, {}, {"rollout_percent": 0}, "github_actions", "rollout"),
    (OLD, {}, {}, "github_actions", "historical"),
    ({**OLD, "trigger": "manual"}, {}, {}, "github_actions", "historical"),
    ({"days": 1}, {}, {}, "inngest", "recent"),
    ({"pr_numbers": [1, 2, 3], "trigger": "scheduled"}, {}, {}, "inngest", "recent"),
    ({"days": 1, "max_items": 80}, {}, {}, "github_actions", "bulk"),
    ({"days": 30}, {}, {}, "inngest", "manual"),
    ({"days": 30, "trigger": "webhook", "max_items": 500}, {}, {}, "github_actions", "bulk"),
    ({"days": 30}, {}, {"large_repositories": {"acme/widgets"}}, "inngest", "manual"),
    ({"days": 30, "trigger": "webhook"}, {}, {"large_repositories": {"acme/widgets"}}, *BULK),
    ({"days": 30, "trigger": "scheduled"}, {}, {}, "github_actions", "no-urgency"),
    ({"days": 30, "trigger": "backfill"}, {}, {}, "github_actions", "no-urgency"),
    ({"days": 30, "trigger": "scheduled", "params": {"due": SOON}}, {}, {}, "inngest", "due"),
    ({"days": 30, "trigger": "scheduled", "params": {"due": LATE}}, {}, {}, *QUIET),
    ({"days": 30, "trigger": "scheduled", "params": {"due": PAST}}, {}, {}, "inngest", "due"),
    ({"days": 30, "trigger": "scheduled", "params": {"due": SOON}}, {}, {"due_within": 60}, *QUIET),
    ({"days": 30, "trigger": "scheduled", "params": {"due": "soon"}}, {}, {}, *QUIET),
    ({"days": 30, "trigger": "backfill", "params": {"due": SOON}}, {}, {}, *QUIET),
    ({"days": 30, "trigger": "scheduled", "params": {"due": SOON}, "max_items": 80}, {}, {}, *BULK),
    ({"days": 30, "trigger": "webhook"}, {}, {}, "inngest", "small"),
    ({"days": 1}, {"capable": ["github_actions", "local"]}, {}, "github_actions", "capability"),
    ({"days": 1}, {"down": ["inngest"]}, {}, "github_actions", "fallback"),
    (OLD, {"down": ["github_actions"]}, {}, "github_actions", "historical"),
    (OLD, {"down": ["github_actions", "inngest"]}, {}, "local", "fallback"),
    ({"days": 1}, {"down": ["inngest", "github_actions"]}, {}, "local", "fallback"),
    ({"days": 1}, {"lane": "inngest", "down": ["inngest"]}, {}, "inngest", "explicit"),
    # Inngest crowded: scheduled and backfill work goes to Actions; what a person or a
    # webhook asked for, or a lane someone chose, stays
    ({"days": 30, "trigger": "scheduled", "params": {"due": SOON}}, CROWDED, {}, *MOVED),
    ({"days": 1, "trigger": "backfill"}, CROWDED, {}, *MOVED),
    ({"days": 1}, CROWDED, {}, "inngest", "recent"),
    ({"days": 30, "trigger": "webhook"}, CROWDED, {}, "inngest", "small"),
    (
        {"days": 1, "trigger": "scheduled"},
        {**CROWDED, "lane": "inngest"},
        {},
        "inngest",
        "explicit",
    ),
    (
        {"days": 1, "trigger": "scheduled"},
        {**CROWDED, "lane": "inngest", "movable": True},
        {},
        *MOVED,
    ),
    (
        {"days": 1, "trigger": "scheduled"},
        {**CROWDED, "down": ["github_actions"]},
        {},
        "inngest",
        "recent",
    ),
    (
        {"days": 1, "trigger": "scheduled"},
        {"crowded": {"github_actions": "x"}},
        {},
        "inngest",
        "recent",
    ),
]


@pytest.mark.parametrize(("fields", "kwargs", "config", "lane", "rule"), CASES)
def test_routing_table(fields, kwargs, config, lane, rule):
    route = decide(spec(**fields), NOW, RoutingSettings(**config), **kwargs)
    assert (route.lane, route.rule) == (lane, rule)
    assert route.reason


def test_a_job_moved_off_a_crowded_inngest_says_why():
    route = decide(spec(days=1, trigger="scheduled"), NOW, **CROWDED)
    assert route.fallback_from == "inngest"
    assert route.reason.startswith("inngest crowded (over 50 jobs waiting for its 5 places)")
    assert "was: " in route.reason


def test_inngest_down_falls_back_to_actions_with_high_priority():
    route = decide(spec(days=1), NOW, down=["inngest"])
    assert (route.fallback_from, route.priority) == ("inngest", "high")


def test_the_router_never_picks_a_lane_the_job_type_cannot_run():
    for fields, kwargs, config, _, _ in CASES:
        kwargs = {**kwargs, "capable": ["github_actions"]}
        kwargs.pop("lane", None)
        kwargs.pop("down", None)
        assert decide(spec(**fields), NOW, RoutingSettings(**config), **kwargs).lane == (
            "github_actions"
        )


def test_rollout_zero_routes_none_and_hundred_routes_all():
    repos = [f"org{n}/repo{n}" for n in range(2000)]
    assert not any(in_rollout(r, 0) for r in repos)
    assert all(in_rollout(r, 100) for r in repos)
    quarter = sum(in_rollout(r, 25) for r in repos) / len(repos)
    assert 0.22 < quarter < 0.28


def test_rollout_bucket_is_stable_and_non_negative():
    assert rollout_bucket("Acme/Widgets") == rollout_bucket("acme/widgets")
    assert all(0 <= rollout_bucket(f"o/r{n}") < 10_000 for n in range(1000))
    assert rollout_bucket("acme/widgets") == 80  # pinned: a changed hash reshuffles rollout


def test_a_repository_the_probes_saw_large_is_bulk_without_a_static_list():
    quiet = {"since": NOW - timedelta(days=40), "until": NOW, "trigger": "scheduled"}
    small = spec(**quiet, params={"pull_requests": 120})
    large = spec(**quiet, params={"pull_requests": 60_000})
    assert decide(small, NOW).rule == "no-urgency"
    route = decide(large, NOW)
    assert (route.lane, route.rule) == BULK
    assert decide(large, NOW, RoutingSettings(large_pull_requests=100_000)).rule == "no-urgency"
    assert decide(spec(**quiet, params={"pull_requests": True}), NOW).rule == "no-urgency"


def test_a_due_that_is_not_a_zoned_time_is_ignored():
    assert due_at({"due": "tomorrow"}) is None
    assert due_at({"due": "2026-06-01T00:00:00"}) is None  # naive
    assert due_at({"due": 5}) is None
    assert due_at({}) is None
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert due_at({"due": at.isoformat()}) == at
