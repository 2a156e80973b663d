"""`bin/bench capture` runs end to end on a tiny load (numbers come from real runs)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner


@pytest.mark.slow
def test_bench_capture_reports_points_ratio_wall_and_memory(server_url, monkeypatch):
    from devtools.bench import bench as full_bench

    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        full_bench,
        ["capture", "--prs", "100", "--memory-prs", "100", "--latency-ms", "0", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "graphql_points_per_1000_prs_strict",
        "graphql_points_per_1000_prs_lenient",
        "rest_only_points_per_1000_prs",
        "ratio_strict",
        "wall_s",
        "peak_rss_mb",
    ):
        assert numbers[key] > 0, key
    assert numbers["ratio_strict"] > 10  # REST-only costs far more than GraphQL
    assert numbers["rest_requests_per_1000_prs_strict"] == 0  # never left GraphQL
    strict, lenient = (numbers[f"graphql_points_per_1000_prs_{c}"] for c in ("strict", "lenient"))
    assert lenient <= strict


@pytest.mark.slow
def test_bench_latency_reports_both_sides(server_url, monkeypatch):
    from devtools.bench import bench as full_bench

    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        full_bench, ["latency", "--jobs", "20", "--gap-ms", "5", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["jobs"] == 20
    for key in ("p50_ms", "p95_ms", "procrastinate_p95_ms"):
        assert 0 < numbers[key] < 1000, key
    assert numbers["p50_ms"] <= numbers["p95_ms"] <= numbers["max_ms"]
