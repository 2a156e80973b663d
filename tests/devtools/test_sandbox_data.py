"""The generated world: deterministic, shaped like real repositories, changeable."""

from __future__ import annotations

import statistics
from datetime import timedelta

from devtools.sandbox import World
from devtools.sandbox.data import CHANGE_TYPES, REVIEW_STATES
from tests.sandbox_fixtures import NOW, gql


def fingerprint(world: World) -> list:
    repo = world.repository("acme/widgets")
    return [
        (
            p.number,
            p.title,
            p.created_at,
            len(p.reviews),
            len(p.files),
            p.author.login if p.author else None,
        )
        for p in repo.pulls.values()
    ]


def test_same_seed_same_world_other_seed_other_world():
    def make(seed: int) -> World:
        world = World(seed, now=NOW)
        world.add_repository("acme/widgets", 50, 30)
        return world

    assert fingerprint(make(3)) == fingerprint(make(3))
    assert fingerprint(make(3)) != fingerprint(make(4))


def test_default_shape_is_like_real_repositories(world):
    pulls = list(world.repository("acme/widgets").pulls.values())
    median = {
        k: statistics.median(len(getattr(p, k)) for p in pulls)
        for k in ("reviews", "comments", "threads", "files", "commits")
    }
    assert 1 <= median["reviews"] <= 2
    assert 2 <= median["comments"] <= 3
    assert 1 <= median["threads"] <= 2
    assert 4 <= median["files"] <= 6
    assert 2 <= median["commits"] <= 4
    none = {k: sum(not getattr(p, k) for p in pulls) / len(pulls) for k in ("reviews", "threads")}
    assert all(0.15 < share < 0.35 for share in none.values())
    assert any(len(p.files) > 100 for p in pulls)
    assert {p.state for p in pulls} == {"OPEN", "CLOSED", "MERGED"}
    assert any(p.is_draft for p in pulls)
    assert {r.state for p in pulls for r in p.reviews} == set(REVIEW_STATES)
    assert {f.change_type for p in pulls for f in p.files} == set(CHANGE_TYPES)
    assert any(p.author is None for p in pulls)
    assert any(p.author and p.author.kind == "Bot" for p in pulls)
    assert all(p.created_at >= NOW - timedelta(days=365) for p in pulls)
    replies = [c for p in pulls for c in p.review_comments if c.reply_to]
    assert replies
    assert all(c.path and c.line for p in pulls for c in p.review_comments)


def test_long_tails_need_nested_pagination(world):
    pulls = list(world.repository("acme/widgets").pulls.values())
    for kind in ("reviews", "comments", "threads", "files", "commits"):
        assert any(len(getattr(p, kind)) > 100 for p in pulls), kind


def test_a_lean_world_has_little_inside_each_pull_request():
    """`bin/bench fleet` measures scheduling: its pull requests carry no long tails."""
    world = World(3, now=NOW, lean=True)
    pulls = list(world.add_repository("acme/lean", 200, 365).pulls.values())
    assert [len(p.files) for p in pulls] == [1] * 200
    assert [len(p.commits) for p in pulls] == [1] * 200
    assert {len(p.reviews) for p in pulls} == {0, 1}
    assert {len(p.comments) for p in pulls} == {0, 1}
    assert not any(p.threads for p in pulls)
    assert {p.state for p in pulls} == {"OPEN", "CLOSED", "MERGED"}
    assert all(p.updated_at >= p.created_at for p in pulls)


def test_what_is_added_after_a_lookup_is_found_by_its_node_id():
    world = World(3, now=NOW)
    world.add_repository("acme/one", 3, 30)
    assert world.find("nope") is None  # the index is built here
    repo = world.add_repository("acme/two", 0, 30)
    pr = world.add_pull_request("acme/two", NOW + timedelta(minutes=1))
    comment = world.add_review_comment("acme/two", pr.number, NOW + timedelta(minutes=2))
    thread = next(t for t in pr.threads if comment in t.comments)
    assert world.find(repo.node_id) is repo
    assert world.find(pr.node_id) == (repo, pr)
    assert world.find(f"PRRT_{thread.database_id}") is thread
    replaced = world.add_repository("acme/two", 1, 30)  # the name taken anew
    assert world.find(pr.node_id) is None
    assert world.find(replaced.node_id) is replaced


def test_changes_while_serving_show_up(gh, sandbox):
    world = World(5, now=NOW)
    world.add_repository("acme/small", 3, 10)
    sandbox.world.repositories.update(world.repositories)
    later = NOW + timedelta(hours=1)
    new = sandbox.world.add_pull_request("acme/small", later)
    sandbox.world.edit_pull_request("acme/small", 1, later, "Renamed")
    query = """{ repository(owner: "acme", name: "small") {
      pullRequests(first: 10, orderBy: {field: UPDATED_AT, direction: DESC}) {
        totalCount nodes { number title updatedAt } } } }"""
    nodes = gql(gh, query).json()["data"]["repository"]["pullRequests"]
    assert nodes["totalCount"] == 4
    assert {n["number"] for n in nodes["nodes"][:2]} == {1, new.number}
    assert nodes["nodes"][[n["number"] for n in nodes["nodes"]].index(1)]["title"] == "Renamed"


def test_a_renamed_login_keeps_its_id(world):
    user = world.users[3]
    old = user.login
    world.rename_user(user.database_id, "renamed-login")
    assert world.users[3].login == "renamed-login"
    assert world.users[3].database_id == user.database_id
    world.rename_user(user.database_id, old)
