"""`bin/bench freshness` end to end on a small load (the numbers come from a real run)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner


@pytest.mark.slow
def test_bench_freshness_keeps_a_small_fleet_fresh_and_says_what_it_cost(server_url, monkeypatch):
    from devtools.bench import bench

    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench,
        ["freshness", "--repos", "40", "--hours", "7", "--changes-per-day", "300", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["changes"] > 50
    assert numbers["changes_judged"] > 10
    assert numbers["slo_attainment"] >= 0.95
    assert numbers["changes_stored_within_target"] >= 0.95
    assert numbers["failed_attempts"] == 0
    # at most 40 repositories a query (fewer while some wait for their refresh): >= 2.5
    assert 2.5 <= numbers["probe_points_per_100_repos"] <= 5
    # a fleet this small fills no probe query: the saving shows at scale (see the note)
    assert numbers["naive_points_per_hour"] > 0
    assert numbers["ratio"] > 0.5
