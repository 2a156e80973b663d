"""The freshness loop on the real PostgreSQL and the sandbox: bootstrap, batched probes,
whole refreshes of what changed (activity on year-old pull requests included), unchanged
repositories marked fresh without a job, promotion and cooldown."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from capture.freshness.loop import bootstrap, on_request, refresh
from capture.freshness.registry import Entry, Registry
from devtools.sandbox import World
from jobstore import views
from jobstore.dispatcher import Dispatcher
from jobstore.domain import Status
from jobstore.spec import GITHUB_EPOCH, JobSpec
from tests.capture.conftest import LOCAL
from tests.capture.rig import LOCAL as LOCAL_ROUTE
from tests.sandbox_fixtures import NOW

REPOS = ("acme/widgets", "acme/gadgets", "acme/sprockets")


@pytest.fixture
def world() -> World:
    world = World(seed=5, now=NOW)
    for name, pulls in zip(REPOS, (60, 25, 5), strict=True):
        world.add_repository(name, pulls, 540)
    return world


def rows(url: str, query: str, *args) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def test_a_new_repository_is_bootstrapped_recent_first_and_the_audit_trail_says_so(
    loop, database_url
):
    loop.registry.track([Entry("acme/widgets", "hot")], loop.rig.clock())
    report = loop.plan()
    assert report.bootstrapped == ["acme/widgets"]
    (tracked,) = loop.registry.tracked()
    assert tracked["bootstrap"] == "started"
    jobs = {j.params["bootstrap"]: j for j in map(loop.rig.store.get, tracked["bootstrap_jobs"])}
    recent, history = jobs["recent"], jobs["history"]
    assert (recent.job_type, recent.lane) == ("repository-refresh", "local")
    assert "the last 30 days first, on the fast lane" in recent.reason
    assert history.job_type == "historical-sync"
    assert "history before the last 30 days, newest first" in history.reason
    assert history.until <= loop.rig.clock() - timedelta(days=30)
    loop.work()
    assert {loop.rig.store.get(j).status for j in tracked["bootstrap_jobs"]} == {Status.COMPLETED}
    stored = rows(database_url, "SELECT count(*) FROM pull_requests")[0][0]
    assert stored == 60  # the last 30 days and the whole history before them
    (state,) = loop.registry.freshness()
    assert state["fresh_as_of"] is not None
    assert state["watermark"] is not None


def test_unchanged_repositories_are_marked_fresh_by_one_probe_without_a_job(loop, database_url):
    loop.registry.track([Entry(name, "hot") for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()
    jobs_before = rows(database_url, "SELECT count(*) FROM job_heads")[0][0]
    loop.rig.clock.advance(minutes=6)  # past a third of the hot target
    report = loop.plan()
    assert (report.probed, report.fresh, report.refreshes) == (3, 3, {})
    assert report.probe_points == loop.probe_points() == 1  # one aliased query for all three
    assert rows(database_url, "SELECT count(*) FROM job_heads")[0][0] == jobs_before
    ages = {r["repository"]: r["fresh_as_of"] for r in loop.registry.freshness()}
    assert set(ages.values()) == {loop.rig.clock()}
    # the probe saw each one's size: the router's "large" reads it, not a static list
    sizes = dict(rows(database_url, "SELECT repository, pull_requests FROM repo_probes"))
    assert sizes == {"acme/widgets": 60, "acme/gadgets": 25, "acme/sprockets": 5}
    (tracked,) = [t for t in loop.registry.load(loop.rig.store.active) if t.repository == REPOS[0]]
    spec = loop.rig.store.get(
        refresh(Dispatcher(loop.rig.store, {}, {}), tracked, loop.rig.clock(), LOCAL)
    ).spec()
    assert spec.params["pull_requests"] == 60


def test_a_review_on_a_year_old_pull_request_is_refreshed_whole(loop, world, database_url):
    loop.registry.track([Entry(name, "warm") for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()
    repo = world.repository("acme/widgets")
    old = min(repo.pulls.values(), key=lambda p: p.created_at)
    assert loop.rig.clock() - old.created_at > timedelta(days=365)
    loop.rig.clock.advance(hours=3)
    at = loop.rig.clock() - timedelta(minutes=30)
    review = world.add_review("acme/widgets", old.number, at, "APPROVED")
    comment = world.add_review_comment("acme/widgets", old.number, at)
    report = loop.plan()
    assert (report.changed, report.fresh, report.refreshes) == (["acme/widgets"], 2, {})
    later = world.add_comment("acme/widgets", old.number, loop.rig.clock(), "and one more")
    loop.rig.clock.advance(hours=1)  # two thirds of the 6 h target: now it is refreshed
    report = loop.plan()
    assert (report.probed, list(report.refreshes)) == (0, ["acme/widgets"])  # known: no probe
    fresh = {r["repository"]: r for r in loop.registry.freshness()}["acme/widgets"]["fresh_as_of"]
    job = loop.rig.store.get(report.refreshes["acme/widgets"])
    assert job.params["due"] == (fresh + timedelta(hours=6)).isoformat()  # a batch leaves by it
    (result,) = loop.work()
    assert result.outcome == "completed", result
    assert rows(database_url, "SELECT state FROM reviews WHERE id = %s", review.database_id) == [
        ("APPROVED",)
    ]
    assert rows(database_url, "SELECT kind FROM comments WHERE id = %s", comment.database_id) == [
        ("review",)
    ]
    assert rows(database_url, "SELECT kind FROM comments WHERE id = %s", later.database_id) == [
        ("issue",)  # coalesced into the same refresh
    ]
    state = {r["repository"]: r for r in loop.registry.freshness()}["acme/widgets"]
    assert state["watermark"] == old.updated_at
    assert state["fresh_as_of"] == loop.rig.clock()


def test_a_person_asking_promotes_a_tracked_repository_to_hot(loop):
    loop.registry.track([Entry("acme/gadgets", "cold")], loop.rig.clock())
    spec = JobSpec.create("pr-reviews", "acme/gadgets", pr_numbers=[1])
    now = loop.rig.clock()
    assert on_request(loop.registry, spec, now, LOCAL)
    (tracked,) = loop.registry.load(loop.rig.store.active)
    assert (tracked.effective_tier(now), tracked.effective_tier(now + timedelta(hours=3))) == (
        "hot",
        "cold",
    )
    assert on_request(loop.registry, spec, datetime.now(UTC), LOCAL)  # the view reads now()
    (row,) = loop.registry.freshness()
    assert (row["tier"], row["effective_tier"]) == ("cold", "hot")
    scheduled = JobSpec.create("pr-reviews", "acme/gadgets", pr_numbers=[1], trigger="scheduled")
    assert not on_request(loop.registry, scheduled, loop.rig.clock(), LOCAL)
    untracked = JobSpec.create("pr-reviews", "acme/other", pr_numbers=[1])
    assert not on_request(loop.registry, untracked, loop.rig.clock(), LOCAL)


def test_a_request_repeated_just_after_it_completed_is_coalesced(loop):
    rig = loop.rig
    spec = JobSpec.create("pr-reviews", "acme/gadgets", pr_numbers=[1])
    first = rig.enqueue("pr-reviews", "acme/gadgets", pr_numbers=[1])
    assert rig.run(first).outcome == "completed"
    rig.clock.advance(seconds=30)
    again = rig.store.enqueue(spec, rig.clock())
    assert (again.job_id, again.created, again.coalesced) == (first, False, True)
    rig.clock.advance(seconds=31)  # past the 60 s cooldown
    assert rig.store.enqueue(spec, rig.clock()).created


def test_the_planners_own_refresh_is_never_swallowed_by_the_cooldown(loop, world):
    """A target under ~90 s: the planner's next refresh comes within the cooldown of the
    last one's end, for a change it found; it is a new job, not the old one's answer."""
    rig = loop.rig
    scheduled = JobSpec.create(
        "repository-refresh",
        "acme/gadgets",
        days=1,
        trigger="scheduled",
        dedupe_key="repository-refresh:acme/gadgets",
    )
    first = rig.store.enqueue(scheduled, rig.clock(), route=LOCAL_ROUTE).job_id
    assert rig.run(first).outcome == "completed"
    rig.clock.advance(seconds=20)
    again = rig.store.enqueue(scheduled, rig.clock(), route=LOCAL_ROUTE)
    assert again.created
    assert again.job_id != first
    assert not again.coalesced


def test_a_repository_github_does_not_know_is_reported_not_retried_every_pass(loop, database_url):
    loop.registry.track([Entry("acme/gone", "hot"), Entry("acme/gadgets", "hot")], loop.rig.clock())
    loop.plan()
    loop.work()
    job_views = views.open_views(database_url)
    views.catch_up(loop.rig.store, job_views)  # as every script does before it exits
    job_views.close()
    (gone,) = [r for r in loop.registry.freshness() if r["repository"] == "acme/gone"]
    assert gone["breached"]
    assert "Could not resolve" in gone["last_error"]
    assert loop.plan().bootstrapped == []  # not again within its target
    loop.rig.clock.advance(minutes=16)
    assert loop.plan().bootstrapped == ["acme/gone"]


def test_probes_stop_at_the_real_time_reserve(loop):
    loop.registry.track([Entry(name, "hot") for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()
    loop.rig.clock.advance(minutes=6)
    reserved = replace(LOCAL, reserve=2_000_000)  # more than the sandbox token's budget
    report = loop.plan(reserved)
    assert (report.probed, report.deferred) == (0, 3)


def test_a_bootstrap_asked_for_again_while_its_backfill_runs_makes_no_second_backfill(
    loop, database_url
):
    """A pass that died after enqueueing a bootstrap, before recording it: the next pass
    (a minute later, or another planner's) asks again and gets the same backfill."""
    loop.registry.track([Entry("acme/widgets", "hot")], loop.rig.clock())
    dispatcher, now = Dispatcher(loop.rig.store, {}, {}), loop.rig.clock()
    bootstrap(dispatcher, loop.registry, "acme/widgets", now, LOCAL)
    bootstrap(dispatcher, loop.registry, "acme/widgets", now + timedelta(minutes=1), LOCAL)
    query = "SELECT count(*) FROM job_heads WHERE job_type = %s"
    assert rows(database_url, query, "historical-sync") == [(1,)]


def test_two_planners_at_once_do_the_work_of_one(loop):
    """A pass holds the planner lock: another planner's pass meanwhile skips, so a new
    repository is bootstrapped once however many planners run."""
    loop.registry.track([Entry("acme/widgets", "hot")], loop.rig.clock())
    other = Registry(loop.rig.store.database("other-planner"))
    with other.planning() as mine:
        assert mine
        report = loop.plan()
    assert report.skipped
    assert report.bootstrapped == []
    assert loop.rig.store.heads.count() == 0
    assert loop.plan().bootstrapped == ["acme/widgets"]
    assert loop.plan().bootstrapped == []  # bootstrapped once


def test_a_repository_with_confirmed_webhooks_gets_no_comment_probe(loop, world, database_url):
    loop.registry.track([Entry(name, "hot") for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()
    with psycopg.connect(database_url, autocommit=True) as conn:  # the App's, reconciled
        conn.execute(
            "INSERT INTO webhook_installations (installation_id, created_at, checked_at, "
            "confirmed_through) VALUES (77, %s, %s, %s)",
            (loop.rig.clock(),) * 3,
        )
        conn.execute(
            "UPDATE tracked_repositories SET installation_id = 77 WHERE repository = %s",
            (REPOS[0],),
        )
    loop.rig.clock.advance(minutes=6)
    world.edit_bumps_pr = False
    for name in REPOS[:2]:  # an edit that does not move its pull request
        pr = next(p for p in world.repository(name).pulls.values() if p.comments)
        world.edit_comment(name, pr.number, pr.comments[0].database_id, loop.rig.clock(), "e")
    loop.rig.sandbox.ledger.clear()
    report = loop.plan(replace(LOCAL, comment_probes="yes"))
    assert report.comment_changes == [REPOS[1]]  # the webhook brings the other one's
    probed = {e.path for e in loop.rig.sandbox.ledger.entries if e.path.endswith("/comments")}
    assert probed
    assert not [p for p in probed if REPOS[0] in p]


def test_a_fifteen_year_history_is_stored_whole_and_the_bootstrap_is_then_done(
    loop, world, database_url
):
    """History is not cut at ten years: the backfill's window starts in 2008, GitHub's
    first year, and the bootstrap is done only once that history completed."""
    world.add_repository("acme/ancient", 40, 15 * 365)
    loop.registry.track([Entry("acme/ancient", "cold")], loop.rig.clock())
    loop.plan()
    (tracked,) = loop.registry.tracked()
    history = loop.rig.store.get(tracked["bootstrap_jobs"][-1])
    assert history.since == GITHUB_EPOCH
    assert "whole history before the last 30 days" in history.reason
    assert loop.registry.bootstrap_progress()["in_progress"] == 1
    loop.work()
    oldest = rows(database_url, "SELECT min(created_at) FROM pull_requests")[0][0]
    assert loop.rig.clock() - oldest > timedelta(days=14 * 365)
    assert rows(database_url, "SELECT count(*) FROM pull_requests") == [(40,)]
    report = loop.plan()
    assert report.bootstraps_done == 1
    progress = loop.registry.bootstrap_progress()
    assert (progress["done"], progress["in_progress"], progress["waiting"]) == (1, 0, 0)


def test_bootstraps_are_paced_hot_first_and_the_rest_wait_their_turn(loop, world):
    names = [f"acme/p{i}" for i in range(6)]
    for name in names:
        world.add_repository(name, 2, 60)
    now = loop.rig.clock()
    loop.registry.track([Entry(n, "cold") for n in names[:4]], now)
    loop.registry.track([Entry(n, "hot") for n in names[4:]], now + timedelta(seconds=1))
    paced = replace(LOCAL, bootstrap_per_pass=3, bootstrap_running=4)
    first = loop.plan(paced)
    assert first.bootstrapped == ["acme/p4", "acme/p5", "acme/p0"]  # hot first, then oldest
    loop.rig.clock.advance(minutes=1)
    assert loop.plan(paced).bootstrapped == ["acme/p1"]  # four in progress: the most
    loop.rig.clock.advance(minutes=1)
    assert loop.plan(paced).bootstrapped == []
    progress = loop.registry.bootstrap_progress()
    assert (progress["in_progress"], progress["waiting"]) == (4, 2)
    loop.work()
    loop.rig.clock.advance(minutes=1)
    report = loop.plan(paced)
    assert report.bootstraps_done == 4
    assert report.bootstrapped == ["acme/p2", "acme/p3"]


def test_a_failed_history_backfill_is_tried_again_then_reported(loop, world, database_url):
    from click.testing import CliRunner

    from capture.cli.track import track

    loop.registry.track([Entry("acme/gadgets", "warm")], loop.rig.clock())
    settings = replace(LOCAL, bootstrap_tries=2)
    loop.plan(settings)
    store = loop.rig.store

    def history() -> str:
        (tracked,) = loop.registry.tracked()
        return tracked["bootstrap_jobs"][-1]

    first = history()
    store.cancel(first, "the runner was lost", loop.rig.clock())
    loop.rig.clock.advance(minutes=1)
    report = loop.plan(settings)
    assert report.bootstraps_retried == 1
    second = history()
    assert second != first
    assert store.get(second).params["try"] == 2
    assert "(try 2 of 2)" in store.get(second).reason
    store.cancel(second, "the runner was lost", loop.rig.clock())
    loop.rig.clock.advance(minutes=1)
    report = loop.plan(settings)
    assert report.bootstraps_failed == 1
    assert "bootstrap of acme/gadgets failed: history backfill cancelled 2 times" in report.errors
    assert loop.registry.bootstrap_progress()["failed"] == 1
    env = {"DATABASE_URL": database_url}
    shown = CliRunner().invoke(track, ["bootstrap"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "bootstrap: 0 of 1 done, 0 in progress, 0 waiting, 1 failed" in shown.output
    assert "history backfill cancelled 2 times" in shown.output
    again = CliRunner().invoke(track, ["bootstrap", "--again", "acme/gadgets", "--json"], env=env)
    assert again.exit_code == 0, again.output
    assert '"waiting": 1' in again.output
    bad = CliRunner().invoke(
        track, ["bootstrap", "--again", "acme/gadgets", "--again", "acme/nope"], env=env
    )
    assert bad.exit_code == 2
    assert "not all of acme/gadgets, acme/nope are tracked: nothing was changed" in bad.output
    loop.rig.clock.advance(minutes=1)
    assert loop.plan(settings).bootstrapped == ["acme/gadgets"]


def test_comment_probes_keep_to_the_rest_pace_longest_unread_first(loop, world, database_url):
    """Where a probe cannot see an edit, every unchanged repository's comments are read:
    at most a minute's REST pace a pass. The rest are not marked fresh on the pull
    request probe alone; they are due again and read first at the next pass."""
    loop.registry.track([Entry(name, "hot") for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()
    loop.gh.session.pool.pace["core"] = 4  # a minute's pace: two repositories' listings
    loop.rig.clock.advance(minutes=6)
    loop.rig.sandbox.ledger.clear()
    report = loop.plan(replace(LOCAL, comment_probes="yes"))
    assert (report.probed, report.comment_probes, report.comment_probes_deferred) == (3, 2, 1)
    assert report.fresh == 2
    read = {e.path.split("/")[3] for e in loop.rig.sandbox.ledger.entries if "comments" in e.path}
    assert len(read) == 2  # each repository's two listings: the pace's 4 points
    (left,) = set(REPOS) - {f"acme/{name}" for name in read}
    ages = {r["repository"]: r["fresh_as_of"] for r in loop.registry.freshness()}
    assert ages[left] < loop.rig.clock()  # not fresh: its comments were not read
    loop.rig.clock.advance(minutes=1)
    loop.rig.sandbox.ledger.clear()
    report = loop.plan(replace(LOCAL, comment_probes="yes"))
    read = {e.path.split("/")[3] for e in loop.rig.sandbox.ledger.entries if "comments" in e.path}
    assert left in {f"acme/{name}" for name in read}  # the longest unread first
    assert (report.comment_probes, report.comment_probes_deferred) == (2, 1)
    ages = {r["repository"]: r["fresh_as_of"] for r in loop.registry.freshness()}
    assert ages[left] == loop.rig.clock()
