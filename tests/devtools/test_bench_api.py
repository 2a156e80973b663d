"""`bin/bench api` runs end to end on a tiny load against a real `bin/serve` process
(numbers come from real runs, not here)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from devtools.bench import bench


@pytest.mark.slow
def test_bench_api_prints_a_table_and_a_json_line(server_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", server_url)
    args = ["api", "--requests", "50", "--cli-jobs", "5", "--progress-events", "10", "--json"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("POST /v1/captures")
    numbers = json.loads(lines[-1])
    assert numbers["sse_events"] == 10  # every Progressed event reached the client
    for key in ("post_per_s", "get_per_s", "cli_enqueue_per_s", "library_submit_per_s"):
        assert numbers[key] > 0, key
    assert numbers["post_p50_ms"] <= numbers["post_p95_ms"]
    assert numbers["post_vs_cli"] == pytest.approx(
        numbers["post_rps"] / numbers["cli_enqueue_per_s"], rel=0.05
    )
    assert numbers["idle_connections"] == 1000
    # a real client is answered while a thousand idle or half-sent connections sit open
    assert 0 < numbers["healthz_p95_ms_under_idle_flood"] < 1000
    assert numbers["post_per_s"] == numbers["post_rps"]
