"""The freshness planner's decisions, pure, with time frozen (freezegun) or passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from capture.freshness.rules import (
    FreshnessSettings,
    Tracked,
    changed,
    decide,
    is_due,
    needs_first_refresh,
    refresh_due,
    refreshes_affordable,
)
from capture.freshness.settings import load_freshness
from jobstore.errors import ConfigError

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
SETTINGS = FreshnessSettings()
TIERS = SETTINGS.tiers


def fresh(repository: str, tier: str, minutes_old: float, **kwargs) -> Tracked:
    return Tracked(
        repository,
        tier,
        bootstrap="started",
        fresh_as_of=T0 - timedelta(minutes=minutes_old),
        watermark=T0 - timedelta(days=1),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("tier", "minutes_old", "due"),
    [
        ("hot", 4, False),
        ("hot", 5, True),  # a third of its 15 minutes
        ("warm", 119, False),
        ("warm", 120, True),
        ("cold", 479, False),
        ("cold", 480, True),
    ],
)
def test_a_repository_is_probed_at_a_third_of_its_tiers_target(tier, minutes_old, due):
    assert is_due(fresh("a/b", tier, minutes_old), T0, TIERS) is due


def test_a_person_asking_makes_it_hot_for_a_while():
    promoted = fresh("a/b", "cold", 6, promoted_until=T0 + timedelta(minutes=30))
    assert promoted.effective_tier(T0) == "hot"
    assert is_due(promoted, T0, TIERS)
    assert promoted.effective_tier(T0 + timedelta(hours=1)) == "cold"


def test_not_probed_while_bootstrapping_refreshing_or_without_a_watermark():
    assert not is_due(Tracked("a/b", "hot"), T0, TIERS)  # bootstrap pending
    assert not is_due(fresh("a/b", "hot", 60, refreshing=True), T0, TIERS)
    never = Tracked("a/b", "hot", bootstrap="started", changed_at=T0 - timedelta(minutes=1))
    assert not is_due(never, T0, TIERS)


@freeze_time(T0)
def test_the_most_overdue_are_probed_first_and_the_budget_caps_the_rest():
    now = datetime.now(UTC)
    tracked = [fresh(f"o/cold{i}", "cold", 600) for i in range(150)]
    tracked += [fresh("o/hot", "hot", 30), fresh("o/warm", "warm", 300), Tracked("o/new", "warm")]
    # a bootstrap's first refresh (2 points) and one probe query: 100 repositories
    decided = decide(tracked, now, SETTINGS, budget=3)
    assert decided.bootstrap == ["o/new"]
    assert decided.probe[:2] == ["o/hot", "o/warm"]  # 2x and 0.83x their targets
    assert len(decided.probe) == 100
    assert decided.waiting == 52
    assert decide(tracked, now, SETTINGS, budget=0).probe == []
    assert decide(tracked, now, SETTINGS, budget=1).bootstrap == []  # waits for the budget


def test_bootstraps_are_paced_hot_tier_first_then_the_longest_tracked():
    added = [T0 + timedelta(seconds=i) for i in range(6)]
    tracked = [
        Tracked("o/c1", "cold", added_at=added[0]),
        Tracked("o/w1", "warm", added_at=added[1]),
        Tracked("o/h2", "hot", added_at=added[3]),
        Tracked("o/h1", "hot", added_at=added[2]),
        Tracked("o/c0", "cold", promoted_until=T0 + timedelta(hours=1), added_at=added[4]),
        Tracked("o/gone", "hot", added_at=added[0], gone=True),
    ]
    decided = decide(tracked, T0, SETTINGS, budget=1000, bootstrap_room=3)
    assert decided.bootstrap == ["o/h1", "o/h2", "o/c0"]  # a person's request counts hot
    assert decide(tracked, T0, SETTINGS, budget=1000, bootstrap_room=0).bootstrap == []
    everything = decide(tracked, T0, SETTINGS, budget=1000, bootstrap_room=10).bootstrap
    assert everything == ["o/h1", "o/h2", "o/c0", "o/w1", "o/c1"]


def test_a_failed_first_refresh_is_tried_again_once_per_target_period():
    failed = Tracked("a/b", "hot", bootstrap="started", changed_at=T0 - timedelta(minutes=10))
    assert not needs_first_refresh(failed, T0, TIERS)
    assert needs_first_refresh(failed, T0 + timedelta(minutes=5), TIERS)
    assert not needs_first_refresh(fresh("a/b", "hot", 1), T0, TIERS)


@pytest.mark.parametrize(
    ("newest", "watermark", "expected"),
    [
        (None, None, False),  # no pull requests at all
        (T0, None, True),
        (T0, T0, False),
        (T0, T0 - timedelta(seconds=1), True),
        (T0 - timedelta(days=1), T0, False),
    ],
)
def test_a_probe_shows_a_change_only_when_github_is_ahead_of_the_watermark(
    newest, watermark, expected
):
    assert changed(newest, watermark) is expected


def test_refreshes_are_enqueued_within_the_budget():
    assert refreshes_affordable(10, SETTINGS) == 5
    assert refreshes_affordable(-3, SETTINGS) == 0


def test_tiers_and_lanes_come_from_the_environment():
    settings = load_freshness(
        {"CAPTURE_TIER_HOT": "10m", "CAPTURE_TIER_COLD": "2d", "CAPTURE_REFRESH_LANE": "local"}
    )
    assert settings.tiers["hot"].target == timedelta(minutes=10)
    assert settings.tiers["hot"].probe_after == timedelta(minutes=10) / 3
    assert settings.tiers["cold"].target == timedelta(days=2)
    assert settings.refresh_lane == "local"
    for env, words in (
        ({"CAPTURE_TIER_WARM": "soon"}, "CAPTURE_TIER_WARM must be a duration"),
        ({"CAPTURE_TIER_HOT": "0"}, "must be more than zero"),
        ({"CAPTURE_FAST_LANE": "pigeon"}, "CAPTURE_FAST_LANE must be one of"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_freshness(env)


def test_a_probe_query_is_filled_up_with_the_repositories_nearest_to_being_due():
    """A query costs the same for 1 repository as for 100: the spare places are free."""
    tracked = [fresh("o/due", "hot", 6)] + [fresh(f"o/r{i}", "cold", i) for i in range(150)]
    tracked.append(fresh("o/busy", "cold", 0, refreshing=True))
    decided = decide(tracked, T0, SETTINGS, budget=10)
    assert len(decided.probe) == 100
    assert decided.probe[:3] == ["o/due", "o/r149", "o/r148"]  # then by how close to due
    assert "o/busy" not in decided.probe
    assert decide([fresh("o/r1", "cold", 1)], T0, SETTINGS, budget=10).probe == []  # none due


def test_a_change_a_probe_found_is_refreshed_at_two_thirds_of_the_target():
    """Changes arriving in between are coalesced into that one refresh."""
    known = fresh("a/b", "hot", 7, pending=True)
    assert not is_due(known, T0, TIERS)  # no point probing again
    assert not refresh_due(known, T0, TIERS)
    assert refresh_due(known, T0 + timedelta(minutes=3), TIERS)  # 10 of 15 minutes
    decided = decide([known], T0 + timedelta(minutes=3), SETTINGS, budget=10)
    assert (decided.refresh, decided.probe) == (["a/b"], [])
    assert decide([known], T0 + timedelta(minutes=3), SETTINGS, budget=1).refresh == []


def test_a_repository_with_healthy_webhooks_rides_others_probe_queries():
    """Its probe is a safety net at its target: from two thirds of it on, it fills up a
    query another repository made (for free) ahead of the rest; alone, it waits for the
    target."""
    healthy = {"webhooks_checked_at": T0 - timedelta(minutes=1)}

    def hooked(name: str, probed_minutes_ago: float) -> Tracked:
        probed = T0 - timedelta(minutes=probed_minutes_ago)
        return fresh(name, "hot", 1, probed_at=probed, **healthy)

    riding, early = hooked("o/riding", 11), hooked("o/early", 9)
    assert not is_due(riding, T0, TIERS)
    assert decide([riding, early], T0, SETTINGS, budget=10).probe == []  # no query for it
    spares = [fresh(f"o/s{i}", "cold", 300 + i) for i in range(120)]  # more urgent spares
    decided = decide([fresh("o/due", "hot", 6), early, *spares, riding], T0, SETTINGS, 10)
    assert decided.probe[:2] == ["o/due", "o/riding"]
    assert decided.probe_due == 1  # the query is o/due's: the rider costs nothing
    assert "o/early" not in decided.probe  # not yet two thirds: the spares' turn
    assert is_due(hooked("o/late", 15), T0, TIERS)  # at its target: probed by its own


def test_a_repository_with_healthy_webhooks_is_not_probed_right_after_its_bootstrap():
    """The bootstrap read it whole: its first probe comes at its target from then."""
    healthy = {"webhooks_checked_at": T0 - timedelta(minutes=1)}
    new = fresh("o/new", "cold", 1, changed_at=T0 - timedelta(minutes=30), **healthy)
    assert new.probed_at is None
    assert not is_due(new, T0, TIERS)
    later = T0 + timedelta(hours=24)
    confirmed = replace(new, webhooks_checked_at=later, fresh_as_of=later)  # still healthy
    assert not is_due(confirmed, later - timedelta(minutes=31), TIERS)
    assert is_due(confirmed, later - timedelta(minutes=30), TIERS)  # 24 h since the bootstrap
