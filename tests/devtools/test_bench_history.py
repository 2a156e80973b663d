"""`bin/bench history` builds a long history and its tenth, times the everyday reads
before and after archiving, and says what archiving saved."""

from __future__ import annotations

import json

from click.testing import CliRunner

from devtools.bench import bench


def test_bench_history_reads_do_not_grow_with_history_and_archiving_shrinks_the_log(
    server_url, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench,
        ["history", "--jobs", "6000", "--live", "200", "--reads", "5", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("metrics_p95_ms", "dashboard_p95_ms", "lane_stats_ms", "show_archived_ms"):
        assert doc[key] > 0, key
    before, after = doc["live_events_bytes"]
    assert after < before * 0.75  # about 40 of the 70 days moved out
    assert doc["peer"]["archived_jobs"] > 0
    assert 0 < doc["bytes_per_archived_job"] <= 300
    assert doc["compression_ratio"] > 8
    assert set(doc["growth_over_10x_history"]) == {
        "metrics_p95_ms",
        "dashboard_p95_ms",
        "lane_stats_ms",
    }
    assert "bytes per archived job" in result.output
