"""The capture meets GitHub's node limit, timeouts and REST costs: shapes shrink, GraphQL
is never left for a shape problem, a fallback is capped, ETags outlive jobs."""

from __future__ import annotations

import pytest

from devtools.sandbox import World
from devtools.sandbox.faults import Fault
from tests.capture.expected import expected, stored
from tests.sandbox_fixtures import NOW


@pytest.fixture
def world() -> World:
    world = World(seed=11, now=NOW)
    world.add_repository("acme/widgets", 150, 120)
    return world


def assert_complete(world, url) -> None:
    want, got = expected(world, "acme/widgets"), stored(url)
    for table in want:
        assert got[table] == want[table], table


def graphql_errors(rig, kind: str) -> int:
    return sum(1 for e in rig.sandbox.ledger.entries if e.kind == "graphql" and e.error == kind)


@pytest.mark.parametrize("told", ["auto", "lenient"])
def test_a_server_stricter_than_planned_gets_smaller_shapes_never_rest(
    rigs, world, database_url, told
):
    """Told the server is lenient (or starting strict against a 20,000-node limit), the
    capture is refused, shrinks the shape and stays on GraphQL."""
    rig = rigs(world, node_counting=told)
    rig.sandbox.options.node_limit = 20_000
    result = rig.run(rig.enqueue("historical-sync", days=200))
    assert result.outcome == "completed", result
    assert_complete(world, database_url)
    assert graphql_errors(rig, "MAX_NODE_LIMIT_EXCEEDED") >= 1
    assert rig.sandbox.ledger.summary("rest")["requests"] == 0


def test_timeouts_shrink_the_shape_and_stay_on_graphql(rigs, world, database_url):
    rig = rigs(world)
    rig.sandbox.options.timeout_nodes = 8_000  # heavier queries answer 502, still charged
    result = rig.run(rig.enqueue("historical-sync", days=200))
    assert result.outcome == "completed", result
    assert_complete(world, database_url)
    statuses = [e.status for e in rig.sandbox.ledger.entries if e.kind == "graphql"]
    assert 502 in statuses
    assert rig.sandbox.ledger.summary("rest")["requests"] == 0


@pytest.mark.parametrize("node_count", ["strict", "lenient"])
def test_the_charged_cost_of_every_query_is_in_the_ledger_and_the_jobs_events(
    rigs, world, node_count
):
    rig = rigs(world, node_count=node_count)
    job_id = rig.enqueue("historical-sync", days=200)
    assert rig.run(job_id).outcome == "completed"
    charged = sum(e.points for e in rig.sandbox.ledger.entries if e.kind == "graphql")
    history = rig.store.history(job_id)
    progressed = sum(e.api_points or 0 for e in history if type(e).__name__ == "Progressed")
    completed = history[-1]
    assert progressed + completed.api_points == charged
    assert sum(q["points"] for q in completed.summary["graphql_queries"].values()) == charged
    assert completed.summary["node_counting"] == node_count


def test_a_pull_request_graphql_cannot_serve_alone_is_fetched_through_rest(
    rigs, world, database_url
):
    """Even one pull request at the smallest shape is refused: that one goes through REST,
    the others stay on GraphQL."""
    rig = rigs(world)
    rig.sandbox.options.node_limit = 150  # no by-id query of PR #7's parts fits
    job_id = rig.enqueue("pr-comments", pr_numbers=[7])
    result = rig.run(job_id)
    assert result.outcome == "completed", result
    rest = {e.path for e in rig.sandbox.ledger.entries if e.kind == "rest"}
    assert "/repos/acme/widgets/pulls/7/comments" in rest
    assert rig.store.history(job_id)[-1].summary["fallbacks"] == 1


def test_a_rest_fallback_past_its_cap_pauses_the_job_instead_of_burning_the_token(
    rigs, world, database_url, clock
):
    rig = rigs(world, rest_floor=20)
    rig.sandbox.faults.add(Fault("graphql", "503", count=10_000))  # GraphQL unusable
    job_id = rig.enqueue("historical-sync", days=200)
    result = rig.run(job_id)
    assert result.outcome == "rescheduled", result
    assert "cap of 20 requests" in result.detail
    job = rig.store.get(job_id)
    assert job.status.value == "retry_scheduled"
    assert job.failures == 0  # a pause, not a failure
    assert rig.sandbox.ledger.summary("rest")["points"] <= 20
    rig.sandbox.faults.clear()  # GraphQL is back
    rig.retry_now(job_id)
    assert rig.run(job_id).outcome == "completed"
    assert_complete(world, database_url)


def test_etags_outlive_the_job_so_asking_again_about_unchanged_data_is_free(
    rigs, world, database_url
):
    rig = rigs(world, force_rest=True)
    first = rig.enqueue("pr-reviews", pr_numbers=[3, 4, 5])
    assert rig.run(first).outcome == "completed"
    spent = rig.sandbox.ledger.summary("rest")["points"]
    assert spent > 0
    again = rig.enqueue("pr-reviews", pr_numbers=[3, 4, 5], dedupe_key="second run")
    assert rig.run(again).outcome == "completed"
    assert rig.sandbox.ledger.summary("rest")["points"] == spent  # every answer a free 304
    assert rig.store.history(again)[-1].summary["rest_requests"] == 0
    assert len(stored(database_url)["reviews"]) == sum(
        len(world.repository("acme/widgets").pulls[n].reviews) for n in (3, 4, 5)
    )
