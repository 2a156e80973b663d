"""What GitHub takes away: a comment, a review comment or a review deleted on GitHub is
marked gone (`deleted_at`, when it was seen gone) once its pull request's whole list of
that kind was fetched again, through GraphQL or REST; a list fetched only in part marks
nothing; a PR closed, converted to draft, reopened or re-based is an ordinary update."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from devtools.sandbox import World
from tests.capture.expected import expected, stored
from tests.sandbox_fixtures import NOW


@pytest.fixture
def world() -> World:
    world = World(seed=11, now=NOW)
    world.add_repository("acme/widgets", 40, 60)
    return world


def victims(world: World, skip: int = 0) -> tuple[int, int, int, int]:
    """A pull request with an issue comment, a review comment and a review: their ids."""
    pulls = world.repository("acme/widgets").pulls.values()
    rich = [p for p in pulls if p.comments and p.review_comments and p.reviews]
    pr = rich[skip]
    return (
        pr.number,
        pr.comments[0].database_id,
        pr.review_comments[0].database_id,
        (pr.reviews[0].database_id),
    )


def gone(url: str) -> dict[str, set[int]]:
    with psycopg.connect(url) as conn:
        return {
            table: {
                row[0]
                for row in conn.execute(f"SELECT id FROM {table} WHERE deleted_at IS NOT NULL")
            }
            for table in ("comments", "reviews")
        }


def assert_live_rows_match(world: World, url: str) -> None:
    want, got = expected(world, "acme/widgets"), stored(url)
    for table in want:
        assert got[table] == want[table], table


def refresh(rig, since):
    job_id = rig.enqueue("repository-refresh", since=since, until=rig.clock())
    return rig.run(job_id)


@pytest.mark.parametrize("path", ["graphql", "rest"])
def test_what_github_deleted_is_marked_gone_when_the_pr_is_fetched_whole(
    rigs, world, database_url, clock, path
):
    rig = rigs(world, force_rest=path == "rest")
    assert rig.run(rig.enqueue("historical-sync", days=90)).outcome == "completed"
    number, comment, review_comment, review = victims(world)
    clock.advance(minutes=5)
    before = clock()
    world.delete_comment("acme/widgets", number, comment, clock())
    world.delete_comment("acme/widgets", number, review_comment, clock())
    world.delete_review("acme/widgets", number, review, clock())
    clock.advance(minutes=1)
    assert refresh(rig, before - timedelta(seconds=1)).outcome == "completed"
    assert gone(database_url) == {"comments": {comment, review_comment}, "reviews": {review}}
    assert_live_rows_match(world, database_url)
    with psycopg.connect(database_url) as conn:  # kept, with when it was seen gone
        query = "SELECT deleted_at FROM comments WHERE id = %s"
        (seen,) = conn.execute(query, (comment,)).fetchone()
    assert seen is not None
    # Fetched whole again with nothing new: nothing more is marked, nothing comes back.
    clock.advance(minutes=1)
    world.edit_pull_request("acme/widgets", number, clock(), "touched")
    assert refresh(rig, clock() - timedelta(seconds=1)).outcome == "completed"
    assert gone(database_url) == {"comments": {comment, review_comment}, "reviews": {review}}


def test_a_list_fetched_only_in_part_marks_nothing(rigs, world, database_url, clock):
    rig = rigs(world)
    assert rig.run(rig.enqueue("historical-sync", days=90)).outcome == "completed"
    first, comment_a, _, _ = victims(world)
    second, comment_b, _, _ = victims(world, skip=1)
    clock.advance(minutes=5)
    before = clock()
    world.delete_comment("acme/widgets", first, comment_a, clock())
    world.delete_comment("acme/widgets", second, comment_b, clock())
    # The first PR's comments fail through GraphQL (a non-null field: GitHub nulls the whole
    # pull request, which goes to REST), and REST cannot serve it either.
    rig.sandbox.faults.add(f"graphql:partial:pr={first},comments", "rest:502:1000")
    clock.advance(minutes=1)
    job_id = rig.enqueue("repository-refresh", since=before - timedelta(seconds=1), until=clock())
    assert rig.run(job_id).outcome != "completed"  # the watermark stays; it is retried
    assert gone(database_url)["comments"] == {comment_b}  # the first PR's comment stays live
    rig.sandbox.faults.clear()
    rig.retry_now(job_id)
    assert rig.run(job_id).outcome == "completed"
    assert gone(database_url)["comments"] == {comment_a, comment_b}
    assert_live_rows_match(world, database_url)


def test_a_pr_closed_drafted_reopened_or_rebased_lands_as_an_update(
    rigs, world, database_url, clock
):
    rig = rigs(world)
    assert rig.run(rig.enqueue("historical-sync", days=90)).outcome == "completed"
    pulls = sorted(world.repository("acme/widgets").pulls.values(), key=lambda p: p.number)
    open_ = [p for p in pulls if p.state == "OPEN"]
    shut = [p for p in pulls if p.state == "CLOSED"]
    assert open_
    assert shut
    clock.advance(minutes=5)
    before = clock()
    drafted, rebased, reopened = open_[0], open_[-1], shut[0]
    drafted.is_draft, drafted.updated_at = not drafted.is_draft, clock()
    rebased.base_ref, rebased.updated_at = "release-2", clock()
    reopened.state, reopened.closed_at, reopened.updated_at = "OPEN", None, clock()
    clock.advance(minutes=1)
    assert refresh(rig, before - timedelta(seconds=1)).outcome == "completed"
    assert_live_rows_match(world, database_url)
    with psycopg.connect(database_url) as conn:
        (base,) = conn.execute(
            "SELECT base_ref FROM pull_requests WHERE id = %s", (rebased.database_id,)
        ).fetchone()
    assert base == "release-2"
