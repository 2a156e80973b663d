"""`bin/bench budget` end to end on a small load (the numbers come from a real run)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner


@pytest.mark.slow
def test_bench_budget_shares_one_budget_and_survives_token_renewals(server_url, monkeypatch):
    from devtools.bench import bench

    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench,
        [
            *("budget", "--jobs", "6", "--hours", "0.4", "--long-hours", "2"),
            *("--speed", "600", "--json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["primary_exhaustions"] == 0
    assert numbers["failed_attempts"] == 0
    assert numbers["long_job"] == "completed"
    assert numbers["token_expiries_survived"] >= 1, numbers  # outlived its first token
    assert numbers["completed_pool"] > 0
    assert numbers["completed_single"] > 0
    buckets = numbers["runs"]["pool"]["buckets"]
    assert len([b for b, points in buckets.items() if points]) >= 4  # the load is spread
