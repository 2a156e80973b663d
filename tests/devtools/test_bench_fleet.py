"""`bin/bench worker` and `bin/bench planner` end to end on a small fleet, each on a
PostgreSQL of its own (the numbers come from real runs, in the closing notes)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from devtools.bench import bench


@pytest.mark.slow
def test_bench_worker_counts_what_a_job_costs():
    result = CliRunner().invoke(
        bench, ["worker", "--jobs", "10", "--repos", "20", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["stored"]["repositories"] == 20
    assert 0 < numbers["statements_per_refresh0"] <= 12
    assert numbers["statements_per_refresh0"] < numbers["statements_per_refresh1"] <= 40
    assert numbers["connections_per_200_jobs"] <= 3
    assert numbers["http_connections_per_200_jobs"] <= 2
    assert numbers["refresh0_jobs_per_s"] > 0
    assert numbers["refresh0_jobs_per_s_one_at_a_time"] > 0
    assert numbers["concurrency"] == 4
    # four threads share the process's pool and HTTP client: no connection per job
    assert numbers["connections_at_concurrency"] <= 5
    assert numbers["http_connections_at_concurrency"] <= 4
    assert numbers["bare_store_jobs_per_s"] > 0
    assert "bin/bench worker took " in result.stderr


@pytest.mark.slow
def test_bench_planner_reads_only_what_is_due():
    result = CliRunner().invoke(
        bench,
        ["planner", "--repos", "1000", "--heads", "2000", "--due", "100", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["repos"] == 1000
    assert numbers["job_heads"] == 2000
    # 9: a pass also looks at the started bootstraps (an index of them; none here)
    assert numbers["planner_pass_nothing_due_statements"] <= 9
    assert numbers["probed"] == 100
    assert numbers["probe_queries"] == 1
    assert numbers["jobs_freshness_json_ms"] > 0


@pytest.mark.slow
def test_bench_fleet_keeps_the_lanes_within_capacity_and_completes_history():
    """A small fleet imported at once, three planners and the fallback racing, a monorepo
    backfilling, lanes with room for three Actions jobs and two Inngest steps."""
    result = CliRunner().invoke(
        bench,
        [
            "fleet",
            *("--repos", "30", "--hours", "3", "--monorepo", "300"),
            *("--actions-capacity", "3", "--inngest-capacity", "2", "--json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["repos"] == 31
    assert numbers["backfills_per_repo_max"] == 1  # four planners, one backfill each
    assert numbers["history_complete"] == 1.0
    assert numbers["bootstrap_hours"] is not None
    assert numbers["dispatches_over_capacity"] == 0
    assert numbers["lane_peak"] == {"inngest": 2, "github_actions": 3}  # full, never over
    assert numbers["redispatches_from_queueing"] == 0
    assert numbers["failed_attempts"] == 0
    assert numbers["planner_passes"] >= 3 * 30  # one a step (the others skipped)
    assert numbers["small_repo_wait_p95_ratio"] > 0
    assert 0 < numbers["planner_pass_own_p95_ms"] <= numbers["planner_pass_p95_ms"]
    assert numbers["actions_refreshes_per_run"] >= 1 or numbers["actions_refresh_runs"] == 0
    assert 0 < numbers["parent_look_runs"] <= 8  # the backfill parents' looks, backed off
    assert "bin/bench fleet took " in result.stderr
