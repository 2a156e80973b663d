"""`bin/bench store` runs end to end on a tiny load (numbers come from real runs, not here)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from devtools.bench import bench


@pytest.mark.slow
def test_bench_store_prints_a_table_and_a_json_line(server_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench, ["store", "--jobs", "100", "--checkpoints", "10", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[1].split()[:2] == ["workers", "ours"]
    numbers = json.loads(lines[-1])
    keys = {"worker_path_ratio_1w", "worker_path_ratio_4w", "ratio_1w", "ratio_4w"}
    assert keys | {"checkpoint_ms"} <= numbers.keys()
    assert numbers["worker_path_1w_jobs_per_s"] > 0
    assert numbers["ours_1w_jobs_per_s"] > 0
    assert numbers["procrastinate_4w_jobs_per_s"] > 0
    assert result.stderr.strip().endswith(" s")
    assert "bin/bench store took " in result.stderr


@pytest.mark.slow
def test_bench_projections_reports_rebuild_rate_and_lag(server_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench,
        ["projections", "--events", "1000", "--samples", "10", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["events"] >= 1000
    assert {"rebuild_events_per_s", "lag_p50_ms", "lag_p95_ms", "ratio"} <= numbers.keys()
    assert 0 < numbers["lag_p50_ms"] <= numbers["lag_p95_ms"]
