"""REST: GitHub's shapes, link pagination, ETags, limits."""

from __future__ import annotations

import re

import pytest

from devtools.sandbox import DEFAULT_TOKEN

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response.headers.get("link", ""))}


def test_pull_list_follows_link_headers_to_the_end(gh, world):
    url, numbers, pages = "/repos/acme/widgets/pulls?state=all&per_page=100", [], 0
    while url:
        response = gh.get(url)
        numbers += [p["number"] for p in response.json()]
        url = links(response).get("next")
        pages += 1
    assert pages == 4
    assert sorted(numbers) == sorted(world.repository("acme/widgets").pulls)
    assert numbers == sorted(numbers, reverse=True)  # sort=created, direction=desc by default


def test_per_page_defaults_to_30_and_is_capped_at_100(gh):
    assert len(gh.get("/repos/acme/widgets/pulls?state=all").json()) == 30
    assert len(gh.get("/repos/acme/widgets/pulls?state=all&per_page=500").json()) == 100


def test_state_sort_and_direction(gh, world):
    open_ = gh.get("/repos/acme/widgets/pulls?per_page=100").json()
    assert {p["state"] for p in open_} == {"open"}
    closed = gh.get("/repos/acme/widgets/pulls?state=closed&sort=updated&per_page=100").json()
    times = [p["updated_at"] for p in closed]
    assert times == sorted(times)  # sort=updated defaults to ascending
    assert gh.get("/repos/acme/widgets/pulls?state=weird").status_code == 422


def test_single_pull_request_has_githubs_fields(gh, world):
    pr = world.repository("acme/widgets").pulls[7]
    body = gh.get("/repos/acme/widgets/pulls/7").json()
    assert body["number"] == 7
    assert body["id"] == pr.database_id
    assert body["additions"] == pr.additions
    assert body["changed_files"] == len(pr.files)
    assert body["commits"] == len(pr.commits)
    assert {"merged", "merged_at", "merge_commit_sha", "draft", "head", "base", "user"} <= set(body)


@pytest.mark.parametrize(
    ("endpoint", "keys"),
    [
        ("pulls/{n}/files", {"filename", "status", "additions", "deletions", "changes"}),
        ("pulls/{n}/reviews", {"id", "user", "state", "submitted_at", "body"}),
        ("pulls/{n}/comments", {"id", "path", "line", "pull_request_review_id"}),
        ("pulls/{n}/commits", {"sha", "commit", "author"}),
        ("issues/{n}/comments", {"id", "user", "body", "created_at", "updated_at"}),
    ],
)
def test_sub_resources_have_githubs_shapes(gh, world, endpoint, keys):
    repo = world.repository("acme/widgets")
    number = next(
        n for n, p in repo.pulls.items() if p.files and p.reviews and p.threads and p.comments
    )
    body = gh.get(f"/repos/acme/widgets/{endpoint.format(n=number)}?per_page=100").json()
    assert body
    assert keys <= set(body[0])


def test_a_reply_names_the_comment_it_answers_and_a_first_comment_does_not(gh, world):
    """GitHub leaves `in_reply_to_id` out of a thread's first comment."""
    repo = world.repository("acme/widgets")
    pr = next(p for p in repo.pulls.values() if any(len(t.comments) > 1 for t in p.threads))
    body = gh.get(f"/repos/acme/widgets/pulls/{pr.number}/comments?per_page=100").json()
    replies = {c["id"]: c.get("in_reply_to_id") for c in body}
    want = {c.database_id: c.reply_to for c in pr.review_comments}
    assert replies == want
    assert any(r is None for r in replies.values())
    assert any(replies.values())


def test_a_long_tail_pull_request_needs_several_pages(gh, world):
    repo = world.repository("acme/widgets")
    big = next(p for p in repo.pulls.values() if len(p.files) > 100)
    first = gh.get(f"/repos/acme/widgets/pulls/{big.number}/files?per_page=100")
    assert "next" in links(first)
    assert len(gh.get(links(first)["last"]).json()) == len(big.files) - 100 * (
        (len(big.files) - 1) // 100
    )


def test_deleted_accounts_are_the_ghost_user(gh, world):
    repo = world.repository("acme/widgets")
    number = next(n for n, p in repo.pulls.items() if p.author is None)
    assert gh.get(f"/repos/acme/widgets/pulls/{number}").json()["user"]["login"] == "ghost"


def test_etag_gives_a_304_that_costs_nothing(gh):
    first = gh.get("/repos/acme/widgets/pulls/3")
    used = int(first.headers["x-ratelimit-used"])
    again = gh.get("/repos/acme/widgets/pulls/3", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert int(again.headers["x-ratelimit-used"]) == used
    assert gh.get("/rate_limit").json()["resources"]["core"]["used"] == used


def test_exhausted_core_budget_is_403_with_the_documented_headers(gh, sandbox):
    sandbox.budgets.exhaust(DEFAULT_TOKEN, "core")
    response = gh.get("/repos/acme/widgets/pulls")
    assert response.status_code == 403
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert "x-ratelimit-reset" in response.headers
    assert "rate limit exceeded" in response.json()["message"]


def test_rest_faults_and_unknown_things(gh, sandbox):
    sandbox.faults.add("rest:429:1")
    assert gh.get("/repos/acme/widgets").status_code == 429
    assert gh.get("/repos/acme/widgets").status_code == 200
    assert gh.get("/repos/acme/nope/pulls").status_code == 404
    assert gh.get("/repos/acme/widgets/pulls/99999").status_code == 404
    assert gh.get("/repos/acme/widgets/pulls", headers={"Authorization": ""}).status_code == 401
