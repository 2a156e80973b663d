"""The sandbox world changing over simulated time: deterministic, heavy-tailed, and
touching pull requests of any age the way GitHub does (their updatedAt moves)."""

from __future__ import annotations

from datetime import timedelta

from devtools.sandbox import World
from devtools.sandbox.activity import Activity, heavy_tailed_rates
from tests.sandbox_fixtures import NOW


def world_of(n: int) -> tuple[World, list[str]]:
    world = World(seed=2, now=NOW)
    names = [f"acme/r{i}" for i in range(n)]
    for name in names:
        world.add_repository(name, 20, 400)
    return world, names


def test_rates_are_heavy_tailed_and_add_up_to_the_days_changes():
    _, names = world_of(200)
    rates = heavy_tailed_rates(names, per_day=2400, seed=1)
    assert abs(sum(rates.values()) * 24 - 2400) < 1e-6
    ranked = sorted(rates.values(), reverse=True)
    assert sum(ranked[:20]) > 0.3 * sum(ranked)  # the busiest tenth does a third or more
    assert ranked[-1] < ranked[0] / 20


def test_the_same_seed_makes_the_same_day_and_changes_land_in_time_order():
    days = []
    for _ in range(2):
        world, names = world_of(30)
        activity = Activity(world, heavy_tailed_rates(names, 600, seed=4), NOW, seed=4)
        days.append(activity.advance(NOW + timedelta(days=1)))
    assert days[0] == days[1]
    assert 450 < len(days[0]) < 750
    times = [c.at for c in days[0]]
    assert times == sorted(times)
    assert times[0] >= NOW
    assert times[-1] <= NOW + timedelta(days=1)


def test_reviews_and_comments_reach_old_pull_requests_and_move_their_updated_at():
    world, names = world_of(10)
    activity = Activity(world, heavy_tailed_rates(names, 2000, seed=9), NOW, seed=9)
    changes = activity.advance(NOW + timedelta(hours=12))
    kinds = {c.kind for c in changes}
    assert kinds == {"pull_request", "edit", "review", "comment"}
    old = [
        c
        for c in changes
        if c.kind in ("review", "comment")
        and world.repository(c.repository).pulls[c.number].created_at < NOW - timedelta(days=300)
    ]
    assert old, "nothing landed on a pull request older than 300 days"
    for change in old:
        assert world.repository(change.repository).pulls[change.number].updated_at >= change.at
    opened = [c for c in changes if c.kind == "pull_request"]
    new = world.repository(opened[0].repository).pulls[opened[0].number]
    assert (new.state, new.created_at) == ("OPEN", opened[0].at)
    happened = [r.created_at for r in new.reviews] + [c.created_at for c in new.comments]
    assert all(at >= new.created_at for at in happened)  # nothing before it was opened
