"""Capturing a two-year history of 1,000 pull requests (250 through REST only, which
walks every page): exactly the sandbox's data. (bin/bench capture runs larger ones.)"""

from __future__ import annotations

import pytest

from devtools.sandbox import World
from tests.capture.expected import counts, expected, stored
from tests.sandbox_fixtures import NOW

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_world() -> World:
    world = World(seed=7, now=NOW)
    world.add_repository("acme/widgets", 1000, 730)
    return world


@pytest.fixture(scope="module")
def rest_world() -> World:
    world = World(seed=7, now=NOW)
    world.add_repository("acme/widgets", 250, 730)
    return world


# (path, how the sandbox counts nodes(ids:), most points per 1,000 pull requests)
PATHS = [("graphql", "strict", 120), ("graphql", "lenient", 50), ("rest", "strict", None)]


@pytest.mark.parametrize(("path", "node_count", "most"), PATHS, ids=["strict", "lenient", "rest"])
def test_full_history_equals_the_sandbox_and_a_rerun_changes_nothing(
    rigs, database_url, request, path, node_count, most
):
    force_rest = path == "rest"
    world = request.getfixturevalue("rest_world" if force_rest else "big_world")
    size = 250 if force_rest else 1000
    rig = rigs(world, node_count=node_count, max_items=5000, force_rest=force_rest)
    job_id = rig.enqueue("historical-sync", days=731, trigger="backfill")
    result = rig.run(job_id)
    assert result.outcome == "completed", result
    assert result.items == size
    want = expected(world, "acme/widgets")
    got = stored(database_url)
    for table in want:
        assert got[table] == want[table], table
    assert counts(database_url)["pr_files"] > 5 * size
    ledger = rig.sandbox.ledger.summary("rest" if force_rest else "graphql")
    if force_rest:
        assert rig.sandbox.ledger.summary("graphql")["requests"] == 0
    else:
        assert ledger["points"] <= most  # 1,000 pull requests
        assert rig.sandbox.ledger.summary("rest")["requests"] == 0  # never left GraphQL
        summary = rig.store.history(job_id)[-1].summary
        assert summary["node_counting"] == node_count  # learnt from the charged costs
        assert sum(q["points"] for q in summary["graphql_queries"].values()) == ledger["points"]
    again = rig.enqueue("historical-sync", days=731, trigger="backfill", dedupe_key="second run")
    assert rig.run(again).outcome == "completed"
    assert stored(database_url) == got
