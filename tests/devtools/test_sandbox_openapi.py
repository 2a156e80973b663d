"""Every REST answer the sandbox serves parses under the models generated from GitHub's
OpenAPI description (githubkit's), so a real client would accept it."""

from __future__ import annotations

import json

import httpx
import pytest
from githubkit_schemas.latest import models
from pydantic import TypeAdapter, ValidationError

from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox, World
from tests.sandbox_fixtures import JOB_INPUTS, NOW, RUN_NAME

PR = 1  # has files, commits, reviews, comments and review threads in the fixture world
ENDPOINTS = [
    ("/repos/acme/widgets", models.FullRepository),
    ("/repos/acme/widgets/pulls?state=all&per_page=100", list[models.PullRequestSimple]),
    (f"/repos/acme/widgets/pulls/{PR}", models.PullRequest),
    (f"/repos/acme/widgets/pulls/{PR}/reviews", list[models.PullRequestReview]),
    (f"/repos/acme/widgets/pulls/{PR}/comments", list[models.PullRequestReviewComment]),
    (f"/repos/acme/widgets/pulls/{PR}/files", list[models.DiffEntry]),
    (f"/repos/acme/widgets/pulls/{PR}/commits", list[models.Commit]),
    (f"/repos/acme/widgets/issues/{PR}/comments", list[models.IssueComment]),
    ("/repos/acme/widgets/issues/comments?sort=updated&direction=desc", list[models.IssueComment]),
    (
        "/repos/acme/widgets/pulls/comments?since=2000-01-01T00:00:00Z",
        list[models.PullRequestReviewComment],
    ),
    ("/rate_limit", models.RateLimitOverview),
]


def parses(model: object, body: object) -> list[str]:
    """The problems a strict client finds, one line each (empty when it parses)."""
    try:
        TypeAdapter(model).validate_python(body)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


@pytest.mark.parametrize(("path", "model"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_rest_answers_parse_under_githubs_openapi_models(gh, world, path, model):
    response = gh.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body, "an empty answer proves nothing"
    assert parses(model, body) == []


def test_every_pull_request_of_the_world_parses(gh, world):
    """Deleted authors (ghost), bots, drafts, merged, closed and open ones alike."""
    problems = []
    for number in sorted(world.repository("acme/widgets").pulls):
        body = gh.get(f"/repos/acme/widgets/pulls/{number}").json()
        problems += [f"#{number} {p}" for p in parses(models.PullRequest, body)]
    assert problems == []


def test_workflow_dispatch_and_runs_parse_too(sandbox, gh):
    sandbox.register_workflow("acme/ops", "capture-job.yml", JOB_INPUTS, run_name=RUN_NAME)
    dispatched = gh.post(
        "/repos/acme/ops/actions/workflows/capture-job.yml/dispatches",
        content=json.dumps(
            {"ref": "main", "inputs": {"job_id": "j1", "attempt": "1"}, "return_run_details": True}
        ),
    )
    assert dispatched.status_code == 200, dispatched.text
    assert parses(models.WorkflowDispatchResponse, dispatched.json()) == []
    runs = gh.get("/repos/acme/ops/actions/runs?event=workflow_dispatch").json()
    assert runs["total_count"] == 1
    assert parses(models.ReposOwnerRepoActionsRunsGetResponse200, runs) == []
    run_id = dispatched.json()["workflow_run_id"]
    assert parses(models.WorkflowRun, gh.get(f"/repos/acme/ops/actions/runs/{run_id}").json()) == []


@pytest.fixture
def own():
    """A world of this test's own (the shared one is not changed) and a client of it."""
    world = World(seed=3, now=NOW)
    world.add_repository("acme/widgets", 5, 30)
    client = httpx.Client(
        transport=Sandbox(world, Options()).transport(),
        base_url="http://sandbox.invalid",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    )
    return world, client


def test_a_renamed_repositorys_old_name_answers_301_and_its_new_place_parses(own):
    world, gh = own
    world.rename_repository("acme/widgets", "umbrella/widgets")
    moved = gh.get("/repos/acme/widgets/pulls", params={"state": "all"})
    assert moved.status_code == 301
    assert parses(models.BasicError, moved.json()) == []
    location = moved.headers["location"]
    assert location.endswith(
        f"/repositories/{world.repository('umbrella/widgets').database_id}/pulls?state=all"
    )
    assert moved.json()["url"] == location
    followed = gh.get(location)
    assert followed.status_code == 200
    assert parses(list[models.PullRequestSimple], followed.json()) == []
    assert followed.json()[0]["base"]["repo"]["full_name"] == "umbrella/widgets"
    full = gh.get("/repos/acme/widgets", follow_redirects=True)
    assert parses(models.FullRepository, full.json()) == []
    assert full.json()["full_name"] == "umbrella/widgets"


def test_a_deleted_or_private_repository_is_a_404_that_parses(own):
    world, gh = own
    world.hide_repository("acme/widgets")
    gone = gh.get("/repos/acme/widgets")
    assert gone.status_code == 404
    assert parses(models.BasicError, gone.json()) == []
    world.restore_repository("acme/widgets")
    assert gh.get("/repos/acme/widgets").status_code == 200


def test_the_world_changes_by_hand_through_the_admin_endpoint(own):
    world, gh = own
    renamed = gh.post(
        "/_sandbox/world",
        json={
            "action": "rename_repository",
            "full_name": "acme/widgets",
            "new_name": "acme/gizmos",
        },
    )
    assert renamed.status_code == 204
    assert gh.get("/repos/acme/widgets").status_code == 301
    assert gh.get("/repos/acme/gizmos").json()["full_name"] == "acme/gizmos"
    user = world.users[0]
    assert (
        gh.post(
            "/_sandbox/world",
            json={"action": "rename_user", "database_id": user.database_id, "login": "new-me"},
        ).status_code
        == 204
    )
    assert user.login == "new-me"
    bad = gh.post("/_sandbox/world", json={"action": "explode"})
    assert bad.status_code == 400
    assert "cannot change the world" in bad.json()["message"]
    missing = gh.post("/_sandbox/world", json={"action": "hide_repository", "full_name": "no/such"})
    assert missing.status_code == 400
