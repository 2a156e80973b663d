"""`bin/bench lifecycle` runs both readings of whether an edit moves its pull request and
says what converged, what stayed stale and what reconciliation cost."""

from __future__ import annotations

import json

from click.testing import CliRunner

from devtools.bench import bench


def test_bench_lifecycle_converges_under_both_readings(server_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", server_url)
    result = CliRunner().invoke(
        bench,
        ["lifecycle", "--repos", "12", "--hours", "2", "--step-minutes", "3", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    yes, no = numbers["edit_bumps_pr_yes"], numbers["edit_bumps_pr_no"]
    for reading in (yes, no):
        assert reading["changes_judged"] > 20
        assert reading["judged_by_kind"].get("comment_edit", 0) > 0
        # a refresh enqueued before its repository was deleted fails, for good (the
        # planner marks the repository gone): no other failure
        assert all("Could not resolve to a Repository" in f for f in reading["failures"])
        assert reading["renames"] >= 1
        assert reading["repos_gone"] >= 1
    # the history's edited comments show at bootstrap whether edits move pull requests:
    # where they do not, deletions are reconciled from the start
    assert numbers["changes_converged"] == 1.0
    assert numbers["stale_rows"] == 0
    assert numbers["renames_followed"] == 1.0
    assert numbers["repos_gone_marked"] == 1.0
    # reconciliation is spent only where GitHub was seen not to move a pull request
    assert yes["reconcile_points_per_100_repos_per_day"] == 0
    assert no["reconcile_points_per_100_repos_per_day"] > 0
    assert "edits move nothing" in result.output
