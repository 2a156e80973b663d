"""Repositories as GitHub moves them, on the real PostgreSQL and the sandbox: renames and
transfers followed by the planner's probe (registry, stored rows, job views, an event with
both names), REST's 301 for an old name followed for reads, a name taken again by a new
repository, repositories gone (marked once, alerted once, not breached, back when shown)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from capture.cli.track import track
from capture.errors import RequestRefused
from capture.freshness.registry import Entry
from capture.github.session import Session
from capture.ops.alerts import RULES
from devtools.sandbox import World
from jobstore import views
from jobstore.domain import Status
from tests.sandbox_fixtures import NOW

REPOS = ("acme/widgets", "acme/gadgets")


@pytest.fixture
def world() -> World:
    world = World(seed=11, now=NOW)
    for name, pulls in zip(REPOS, (30, 12), strict=True):
        world.add_repository(name, pulls, 200)
    return world


def rows(url: str, query: str, *args) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def bootstrapped(loop, tier: str = "hot") -> None:
    loop.registry.track([Entry(name, tier) for name in REPOS], loop.rig.clock())
    loop.plan()
    loop.work()


@pytest.mark.parametrize(
    ("new_name", "kind"), [("acme/widgets-v2", "renamed"), ("umbrella/widgets", "transferred")]
)
def test_a_renamed_or_transferred_repository_is_followed_everywhere(
    loop, world, database_url, new_name, kind
):
    bootstrapped(loop)
    job_views = views.open_views(database_url)
    views.catch_up(loop.rig.store, job_views)
    jobs_before = rows(
        database_url, "SELECT count(*) FROM job_heads WHERE repository = %s", REPOS[0]
    )
    assert jobs_before[0][0] >= 1
    assert (
        rows(database_url, "SELECT count(*) FROM capture_jobs WHERE repository = %s", REPOS[0])
        == jobs_before
    )
    repo_id = world.repository(REPOS[0]).database_id
    world.rename_repository(REPOS[0], new_name)
    loop.rig.clock.advance(minutes=6)
    report = loop.plan()
    assert report.moved == {REPOS[0]: new_name}
    assert report.missing == []
    assert report.gone == []
    tracked = {r["repository"]: r for r in loop.registry.tracked()}
    assert set(tracked) == {new_name, REPOS[1]}
    assert tracked[new_name]["repo_id"] == repo_id
    assert rows(database_url, "SELECT full_name FROM repositories WHERE id = %s", repo_id) == [
        (new_name,)
    ]
    # the watermark and probe state moved with it: no second bootstrap, fresh now
    (state,) = loop.registry.freshness(repository=new_name)
    assert state["watermark"] is not None
    assert state["fresh_as_of"] == loop.rig.clock()
    assert state["bootstrap"] == "done"  # its whole history was stored before the move
    # the job views read under the new name; the event has both names
    moved = rows(database_url, "SELECT count(*) FROM job_heads WHERE repository = %s", new_name)
    assert moved == jobs_before
    in_views = "SELECT count(*) FROM capture_jobs WHERE repository = %s"
    assert rows(database_url, in_views, new_name) == jobs_before
    (event,) = loop.registry.repository_events()
    assert (event["kind"], event["old_name"], event["new_name"]) == (kind, REPOS[0], new_name)
    assert event["repo_id"] == repo_id
    # a rebuild of the views from the log applies the move again
    job_views.rebuild(loop.rig.store)
    assert rows(database_url, in_views, new_name) == jobs_before
    assert rows(database_url, in_views, REPOS[0]) == [(0,)]
    job_views.close()
    # new activity under the new name lands, by a refresh of the new name
    pr = world.add_pull_request(new_name, loop.rig.clock())
    loop.rig.clock.advance(minutes=11)
    loop.plan()
    loop.work()
    loop.rig.clock.advance(minutes=11)
    loop.plan()
    loop.work()
    stored = rows(
        database_url,
        "SELECT r.full_name FROM pull_requests p JOIN repositories r ON r.id = p.repository_id "
        "WHERE p.id = %s",
        pr.database_id,
    )
    assert stored == [(new_name,)]


def test_a_rest_read_of_an_old_name_follows_the_301_and_stores_under_the_new_name(
    rigs, world, database_url
):
    rig = rigs(world, force_rest=True)
    world.rename_repository(REPOS[1], "acme/gadgets-next")
    result = rig.run(rig.enqueue("repository-sync", REPOS[1], days=365))
    assert result.outcome == "completed", result.detail
    names = rows(database_url, "SELECT full_name FROM repositories")
    assert names == [("acme/gadgets-next",)]
    stored = rows(database_url, "SELECT count(*) FROM pull_requests")[0][0]
    assert stored == len(world.repository("acme/gadgets-next").pulls)
    statuses = [e.status for e in rig.sandbox.ledger.entries if e.kind == "rest"]
    assert 301 in statuses  # GitHub's answer for the old name, followed


def test_a_redirect_is_never_followed_for_a_write_nor_taken_as_data():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            301,
            json={"message": "Moved Permanently"},
            headers={"location": "https://api.github.test/repositories/1/dispatches"},
        )

    client = httpx.Client(transport=httpx.MockTransport(answer), max_redirects=3)
    session = Session(client)
    with pytest.raises(RequestRefused, match="redirected POST /repos/a/b/dispatches: HTTP 301"):
        session.request("POST", "https://api.github.test/repos/a/b/dispatches", "core", json={})
    with pytest.raises(RequestRefused, match="redirected GET /repos/a/b too many times"):
        session.request("GET", "https://api.github.test/repos/a/b", "core")


def test_a_new_repository_taking_a_renamed_ones_old_name_does_not_collide(
    loop, world, database_url
):
    bootstrapped(loop)
    old = world.repository(REPOS[0])
    world.rename_repository(REPOS[0], "acme/widgets-archive")
    newcomer = world.add_repository(REPOS[0], 3, 10)  # GitHub drops the redirect
    # someone captures the new one before the planner saw the rename: both rows kept
    result = loop.rig.run(loop.rig.enqueue("repository-sync", REPOS[0], days=30))
    assert result.outcome == "completed", result.detail
    by_id = dict(rows(database_url, "SELECT id, name_stale_at IS NOT NULL FROM repositories"))
    assert by_id[newcomer.database_id] is False
    assert by_id[old.database_id] is True
    # the planner probes the tracked one by its node id: it follows it to its new name
    loop.rig.clock.advance(minutes=6)
    report = loop.plan()
    assert report.moved == {REPOS[0]: "acme/widgets-archive"}
    names = dict(
        rows(database_url, "SELECT id, full_name FROM repositories WHERE name_stale_at IS NULL")
    )
    assert names[old.database_id] == "acme/widgets-archive"
    assert names[newcomer.database_id] == REPOS[0]


def test_a_repository_gone_is_marked_once_alerted_once_not_breached_and_back_when_shown(
    loop, world, database_url
):
    bootstrapped(loop)
    world.hide_repository(REPOS[1])
    loop.rig.clock.advance(minutes=6)
    report = loop.plan()
    assert report.gone == [REPOS[1]]
    gone = {r["repository"]: r for r in loop.registry.tracked()}[REPOS[1]]
    assert gone["gone_at"] == loop.rig.clock()
    assert "not found" in gone["gone_reason"]
    (state,) = loop.registry.freshness(repository=REPOS[1])
    assert state["next_due"] == loop.rig.clock() + timedelta(days=1)  # looked at daily
    stored = rows(
        database_url,
        "SELECT count(*) FROM pull_requests p JOIN repositories r "
        "ON r.id = p.repository_id WHERE r.full_name = %s",
        REPOS[1],
    )[0][0]
    assert stored == 12  # its data stays readable
    # an hour on: never probed, never refreshed, never breached
    for _ in range(6):
        loop.rig.clock.advance(minutes=10)
        report = loop.plan()
        assert REPOS[1] not in report.changed
        assert REPOS[1] not in report.refreshes
        loop.work()
    probes = [r["repository"] for r in loop.registry.freshness(breached_only=True)]
    assert REPOS[1] not in probes
    (state,) = loop.registry.freshness(repository=REPOS[1])
    assert state["gone_at"] is not None
    assert [e["kind"] for e in loop.registry.repository_events()] == ["gone"]
    env = {"DATABASE_URL": database_url}
    listed = CliRunner().invoke(track, ["list"], env=env)
    assert listed.exit_code == 0
    assert REPOS[1] in listed.output
    gone_line = next(line for line in listed.output.splitlines() if REPOS[1] in line)
    assert "2026-11-29" in gone_line.split()[-2]  # its gone_at column
    shown = json.loads(CliRunner().invoke(track, ["events", "--json"], env=env).output)
    assert [(e["kind"], e["old_name"]) for e in shown] == [("gone", REPOS[1])]
    assert "not found" in CliRunner().invoke(track, ["events"], env=env).output
    rule = next(r for r in RULES if r.name == "RepositoryGone")
    from capture.ops.health import Health

    assert rule.check(Health(at=NOW, gone=[REPOS[1]]))[0][0] == REPOS[1]
    jobs = rows(
        database_url,
        "SELECT status FROM job_heads WHERE repository = %s AND status <> %s",
        REPOS[1],
        Status.COMPLETED.value,
    )
    assert jobs == []  # nothing enqueued for it while it was gone
    # made public again: a day on, the rare probe finds it, and it is live again
    world.restore_repository(REPOS[1])
    loop.rig.clock.advance(days=1)
    report = loop.plan()
    assert report.back == [REPOS[1]]
    assert [e["kind"] for e in loop.registry.repository_events()] == ["back", "gone"]
    (state,) = loop.registry.freshness(repository=REPOS[1])
    assert state["gone_at"] is None


def test_a_renamed_user_is_followed_by_the_slow_re_read_and_a_deleted_one_is_left(
    loop, world, database_url
):
    bootstrapped(loop)
    loop.rig.clock.advance(minutes=6)
    first = loop.plan()  # every contributor is read once: none renamed
    known = dict(rows(database_url, "SELECT id, login FROM contributors WHERE node_id IS NOT NULL"))
    assert first.contributors_checked == min(200, len(known))
    assert first.contributors_renamed == 0
    users = [u for u in world.users if u.database_id in known]
    renamed, deleted = users[0], users[1]
    world.rename_user(renamed.database_id, "renamed-login")
    world.delete_user(deleted.database_id)
    loop.rig.clock.advance(days=2)
    assert loop.plan().contributors_checked == max(0, len(known) - 200)  # not due yet
    loop.rig.clock.advance(days=6)  # past the weekly cadence
    report = loop.plan()
    assert report.contributors_renamed == 1
    assert report.errors == []
    now = dict(rows(database_url, "SELECT id, login FROM contributors"))
    assert now[renamed.database_id] == "renamed-login"
    assert now[deleted.database_id] == known[deleted.database_id]  # left as stored
    points = [
        e.points
        for e in loop.rig.sandbox.ledger.entries
        if e.extra.get("operation") == "ContributorLogins"
    ]
    assert points
    assert max(points) == 1


def stored_body(url: str, comment_id: int) -> tuple[str, object]:
    return rows(url, "SELECT body, deleted_at FROM comments WHERE id = %s", comment_id)[0]


def old_commented(world: World, before) -> tuple[int, int]:
    """A pull request last updated before `before`, with an issue comment: (number, id)."""
    pulls = world.repository(REPOS[0]).pulls.values()
    pr = next(p for p in pulls if p.comments and p.updated_at < before)
    return pr.number, pr.comments[0].database_id


@pytest.mark.parametrize("bumps", [True, False], ids=["edit-bumps-pr", "edit-moves-nothing"])
def test_a_comment_edited_on_an_old_pr_lands_within_target_under_either_reading(
    loop, world, database_url, bumps
):
    world.edit_bumps_pr = bumps
    bootstrapped(loop)
    number, comment = old_commented(world, loop.rig.clock() - timedelta(days=60))
    edited_at = loop.rig.clock() + timedelta(minutes=1)
    world.edit_comment(REPOS[0], number, comment, edited_at, "Edited on GitHub.")
    found_by_comment_probe = []
    while stored_body(database_url, comment)[0] != "Edited on GitHub.":
        loop.rig.clock.advance(minutes=2)
        assert loop.rig.clock() - edited_at <= timedelta(minutes=15), "past the hot target"
        report = loop.plan()
        found_by_comment_probe += report.comment_changes
        assert all(r.outcome == "completed" for r in loop.work())
    assert (REPOS[0] in found_by_comment_probe) is (not bumps)
    learned = rows(database_url, "SELECT name, detail FROM github_behaviour")
    if bumps:
        assert learned == []
    else:  # seen once: from now on deletions that move nothing are reconciled
        assert learned == [("edits-move-nothing", f"{REPOS[0]}: comments on #{number}")]
    # unchanged since: the comment probes are conditional reads GitHub answers 304, free
    # (after a first read of each listing, which is charged)
    loop.rig.clock.advance(minutes=6)
    loop.plan()
    loop.rig.clock.advance(minutes=6)
    charged_before = sum(e.points for e in loop.rig.sandbox.ledger.entries if e.kind == "rest")
    report = loop.plan()
    assert report.comment_changes == []
    assert report.fresh == 2
    charged = sum(e.points for e in loop.rig.sandbox.ledger.entries if e.kind == "rest")
    assert charged == charged_before


def test_comments_listed_from_a_lagging_watermark_do_not_say_edits_move_nothing(
    loop, world, database_url
):
    """The comments' watermark can lag the pull requests' (a backfill stored pull requests
    that moved since, without listing comments): a refresh then lists comments whose pull
    requests moved before its bound. Those are not edits that moved nothing."""
    bootstrapped(loop)
    number, _ = old_commented(world, loop.rig.clock() - timedelta(days=60))
    world.add_comment(REPOS[0], number, loop.rig.clock() + timedelta(minutes=1), "New.")
    loop.rig.clock.advance(minutes=3)
    with psycopg.connect(database_url, autocommit=True) as conn:  # as after such a backfill
        conn.execute(
            "UPDATE refresh_watermarks SET updated_at = %s, comments_at = %s WHERE repository = %s",
            (loop.rig.clock(), loop.rig.clock() - timedelta(minutes=10), REPOS[0]),
        )
    job = loop.rig.enqueue("repository-refresh", REPOS[0])
    assert loop.rig.run(job).outcome == "completed"
    assert rows(database_url, "SELECT name, detail FROM github_behaviour") == []
    world.edit_bumps_pr = False  # now one that does not move its pull request
    edited, comment = old_commented(world, loop.rig.clock() - timedelta(days=60))
    assert edited != number
    world.edit_comment(REPOS[0], edited, comment, loop.rig.clock() + timedelta(minutes=1), "e")
    loop.rig.clock.advance(minutes=3)
    job = loop.rig.enqueue("repository-refresh", REPOS[0])
    assert loop.rig.run(job).outcome == "completed"
    assert rows(database_url, "SELECT name, detail FROM github_behaviour") == [
        ("edits-move-nothing", f"{REPOS[0]}: comments on #{edited}")
    ]


def test_a_comment_deleted_without_moving_its_pr_is_caught_by_reconciliation_within_target(
    loop, world, database_url
):
    world.edit_bumps_pr = False
    bootstrapped(loop)
    # a pull request with recent activity, then a deletion on it that moves nothing
    loop.rig.clock.advance(minutes=1)
    pr = world.add_pull_request(REPOS[0], loop.rig.clock())
    first = world.add_comment(REPOS[0], pr.number, loop.rig.clock(), "First.")
    world.add_comment(REPOS[0], pr.number, loop.rig.clock(), "Second.")
    for _ in range(2):
        loop.rig.clock.advance(minutes=11)
        loop.plan()
        loop.work()
    assert stored_body(database_url, first.database_id) == ("First.", None)
    # until GitHub is seen not to move a pull request for an edit, nothing is reconciled
    assert rows(
        database_url,
        "SELECT count(*) FROM job_heads WHERE dedupe_key LIKE %s",
        "repository-reconcile:%",
    ) == [(0,)]
    number, comment = old_commented(world, loop.rig.clock() - timedelta(days=60))
    world.edit_comment(REPOS[0], number, comment, loop.rig.clock(), "Edited.")
    while stored_body(database_url, comment)[0] != "Edited.":
        loop.rig.clock.advance(minutes=2)
        loop.plan()
        loop.work()
    deleted_at = loop.rig.clock()
    world.delete_comment(REPOS[0], pr.number, first.database_id, deleted_at)
    reconciled: list[str] = []
    while stored_body(database_url, first.database_id)[1] is None:
        loop.rig.clock.advance(minutes=2)
        assert loop.rig.clock() - deleted_at <= timedelta(minutes=15), "past the hot target"
        report = loop.plan()
        assert report.changed == []
        assert report.comment_changes == []
        reconciled += report.reconciles
        loop.work()
    assert REPOS[0] in reconciled
    # reconciled at the tier's refresh interval (hot: 10 minutes), not every pass
    loop.rig.clock.advance(minutes=2)
    assert REPOS[0] not in loop.plan().reconciles


def test_a_repository_with_healthy_webhooks_is_reconciled_daily_not_every_interval(
    loop, database_url
):
    bootstrapped(loop)
    now = loop.rig.clock()
    with psycopg.connect(database_url, autocommit=True) as conn:  # the App's, reconciled
        conn.execute(
            "INSERT INTO webhook_installations (installation_id, created_at, checked_at) "
            "VALUES (77, %s, %s)",
            (now, now),
        )
        conn.execute(
            "UPDATE tracked_repositories SET installation_id = 77 WHERE repository = %s",
            (REPOS[0],),
        )
    active = now - timedelta(days=365)  # both have pull requests active since
    first = now + timedelta(minutes=11)  # past the hot tier's refresh interval
    assert loop.registry.reconcile_due(first, active, 10, always=True) == sorted(REPOS)
    later = first + timedelta(minutes=11)
    assert loop.registry.reconcile_due(later, active, 10, always=True) == [REPOS[1]]
    # its deletions come by webhook; the reconciliation is a daily safety net
    next_day = first + timedelta(days=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhook_installations SET checked_at = %s", (next_day,))
    assert loop.registry.reconcile_due(next_day, active, 10, always=True) == sorted(REPOS)


def test_a_reconcile_param_that_is_not_a_day_count_fails_the_job_with_a_clear_error(rigs, world):
    rig = rigs(world)
    job = rig.enqueue("repository-refresh", REPOS[0], days=1, params={"reconcile": "lots"})
    result = rig.run(job)
    assert result.outcome == "failed"
    assert "params.reconcile must be 1 to 90 days, got 'lots'" in result.detail


@pytest.mark.parametrize("bumps", [True, False], ids=["edit-bumps-pr", "edit-moves-nothing"])
def test_a_history_with_an_edited_comment_shows_at_bootstrap_whether_edits_move_prs(
    loop, world, database_url, bumps
):
    world.edit_bumps_pr = bumps
    number, comment = old_commented(world, NOW - timedelta(days=60))
    world.edit_comment(REPOS[0], number, comment, NOW - timedelta(days=3), "Edited long ago.")
    bootstrapped(loop)
    learned = [r[0] for r in rows(database_url, "SELECT name FROM github_behaviour")]
    assert learned == ([] if bumps else ["edits-move-nothing"])


def test_a_repository_tracked_under_its_old_and_new_name_becomes_one_entry(
    loop, world, database_url
):
    bootstrapped(loop)
    world.rename_repository(REPOS[0], "acme/widgets-v2")
    loop.registry.track([Entry("acme/widgets-v2", "hot")], loop.rig.clock())
    loop.plan()  # the new name's bootstrap (the same repository)
    loop.work()
    loop.rig.clock.advance(minutes=6)
    report = loop.plan()
    assert report.errors == []
    assert report.moved == {REPOS[0]: "acme/widgets-v2"}
    assert sorted(r["repository"] for r in loop.registry.tracked()) == [
        "acme/gadgets",
        "acme/widgets-v2",
    ]
    assert [e["kind"] for e in loop.registry.repository_events()] == ["renamed"]


def test_comment_probes_are_daily_until_github_is_seen_not_to_move_a_pr_for_an_edit(
    loop, world, database_url
):
    def listings() -> int:
        return sum(
            1
            for e in loop.rig.sandbox.ledger.entries
            if e.kind == "rest" and e.path.endswith(("/issues/comments", "/pulls/comments"))
        )

    bootstrapped(loop)
    loop.rig.clock.advance(minutes=6)
    loop.plan()
    first = listings()
    assert first == 2 * len(REPOS)  # each repository's newest comment, read once
    loop.rig.clock.advance(minutes=6)
    loop.plan()
    assert listings() == first  # not again within the day: edits move PRs, as far as seen
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO github_behaviour (name, seen_at, detail) VALUES "
            "('edits-move-nothing', now(), 'seen')"
        )
    loop.rig.clock.advance(minutes=6)
    loop.registry._unseen.clear()  # a planner asks again after a minute
    loop.plan()
    assert listings() == first + 2 * len(REPOS)  # now with every probe


def test_a_move_that_cannot_be_written_is_reported_and_the_pass_goes_on(loop, world, database_url):
    bootstrapped(loop)
    repo_id = world.repository(REPOS[0]).database_id
    with psycopg.connect(database_url) as conn:  # a record another writer left in the way
        conn.execute(
            "UPDATE tracked_repositories SET repo_id = NULL WHERE repository = %s", (REPOS[0],)
        )
        conn.execute(
            "UPDATE tracked_repositories SET repo_id = %s WHERE repository = %s",
            (repo_id, REPOS[1]),
        )
    world.rename_repository(REPOS[0], "acme/widgets-v2")
    loop.rig.clock.advance(minutes=6)
    report = loop.plan()
    assert report.moved == {}
    assert any(
        "acme/widgets moved to acme/widgets-v2 on GitHub, not followed" in e for e in report.errors
    )
    assert report.probed == 1  # the other repository's answer went on
    assert report.fresh == 1
