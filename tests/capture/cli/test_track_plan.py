"""`bin/track`, `bin/plan` and `bin/jobs freshness` as a user runs them: bad input is one
line, exit 2, nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner

from capture.cli.enqueue import enqueue
from capture.cli.jobs import jobs
from capture.cli.plan import plan
from capture.cli.track import track
from capture.freshness.registry import FRESHNESS_COLUMNS, Registry
from tests.conftest import assert_refused, count_events

LOCAL = {
    "CAPTURE_FAST_LANE": "local",
    "CAPTURE_BULK_LANE": "local",
    "CAPTURE_REFRESH_LANE": "local",
}


def tracked(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT repository, tier, workspace FROM tracked_repositories ORDER BY 1"
        ).fetchall()


def run(command, args, database_url, **env):
    return CliRunner().invoke(command, args, env={"DATABASE_URL": database_url, **env})


def test_add_list_retier_and_remove(database_url, store):
    done = run(track, ["add", "Acme/Widgets", "acme/gadgets", "--tier", "hot"], database_url)
    assert done.exit_code == 0, done.output
    assert "tracking 2 new, 0 changed (hot)" in done.output
    again = run(track, ["add", "acme/widgets", "--tier", "cold", "--workspace", "w1"], database_url)
    assert "tracking 0 new, 1 changed (cold)" in again.output
    assert tracked(database_url) == [("acme/gadgets", "hot", None), ("acme/widgets", "cold", "w1")]
    listed = json.loads(run(track, ["list", "--json"], database_url).output)
    assert [r["repository"] for r in listed] == ["acme/gadgets", "acme/widgets"]
    assert "acme/widgets" in run(track, ["list"], database_url).output
    assert run(track, ["remove", "acme/gadgets"], database_url).exit_code == 0
    assert tracked(database_url) == [("acme/widgets", "cold", "w1")]


def test_import_checks_every_line_before_writing_any(database_url, store, tmp_path):
    good = tmp_path / "repos.txt"
    good.write_text("# our repositories\nacme/widgets hot team-a\n\nacme/gadgets\n")
    done = run(track, ["import", str(good)], database_url)
    assert done.exit_code == 0, done.output
    assert tracked(database_url) == [
        ("acme/gadgets", "warm", None),
        ("acme/widgets", "hot", "team-a"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("acme/sprockets cold\nacme/nuts lukewarm\n")
    assert_refused(run(track, ["import", str(bad)], database_url), f"{bad}:2: tier must be one of")
    assert len(tracked(database_url)) == 2  # acme/sprockets was not written either


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "acme"], "must be owner/name"),
        (["add", "acme/w", "--tier", "tepid"], "Invalid value for '--tier'"),
        (["add"], "Missing argument"),
        (["remove", "acme/never"], "acme/never is not tracked"),
        (["remove", "not a repo"], "must be owner/name"),
        (["import", "/nonexistent/file"], "cannot read /nonexistent/file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(database_url, store, args, message):
    before = (count_events(database_url), tracked(database_url))
    assert_refused(run(track, args, database_url), message)
    assert (count_events(database_url), tracked(database_url)) == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GITHUB_TOKEN": ""},
            "GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set",
        ),
        ({"GITHUB_TOKEN": "t", "CAPTURE_TIER_HOT": "soon"}, "CAPTURE_TIER_HOT must be a duration"),
        ({"GITHUB_TOKEN": "t", "CAPTURE_REFRESH_LANE": "x"}, "CAPTURE_REFRESH_LANE must be one"),
    ],
)
def test_plan_refuses_bad_configuration(database_url, store, env, message):
    before = count_events(database_url)
    assert_refused(run(plan, ["--once"], database_url, **env), message)
    assert count_events(database_url) == before


def test_plan_bootstraps_what_is_tracked_and_freshness_shows_it(database_url, store, served):
    run(track, ["add", "acme/widgets", "--tier", "hot"], database_url)
    done = run(plan, ["--once", "--json"], database_url, **served.env, **LOCAL)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["bootstrapped"] == ["acme/widgets"]
    shown = run(jobs, ["freshness", "--json"], database_url)
    (row,) = json.loads(shown.output)
    assert (row["repository"], row["effective_tier"], row["bootstrap"]) == (
        "acme/widgets",
        "hot",
        "started",
    )
    assert row["breached"]  # nothing captured yet
    assert "acme/widgets" in run(jobs, ["freshness", "--breached"], database_url).output


def test_freshness_json_has_the_columns_in_the_tables_order(database_url, store):
    for name, tier in (("acme/b", "cold"), ("acme/a", "hot"), ("acme/c", "warm")):
        run(track, ["add", name, "--tier", tier], database_url)
    registry = Registry(store.database("registry"))
    now = datetime.now(UTC)
    registry.probed([("acme/c", None, None)], now)
    registry.fresh(["acme/c"], now - timedelta(days=9))
    rows = json.loads(run(jobs, ["freshness", "--json"], database_url).output)
    assert [list(r) for r in rows] == [sorted(FRESHNESS_COLUMNS)] * 3  # nothing more
    assert [r["repository"] for r in rows] == [r["repository"] for r in registry.freshness()]
    assert rows[-1]["repository"] == "acme/c"  # seen, if long ago: after the never-seen


def test_a_manual_enqueue_promotes_a_tracked_repository(database_url, store, served):
    run(track, ["add", "acme/widgets", "--tier", "cold"], database_url)
    done = run(
        enqueue,
        ["pr-reviews", "--repo", "acme/widgets", "--prs", "1", "--lane", "local", "--json"],
        database_url,
        **served.env,
    )
    assert json.loads(done.output)["promoted"] is True
    (row,) = json.loads(run(jobs, ["freshness", "--json"], database_url).output)
    assert (row["tier"], row["effective_tier"]) == ("cold", "hot")


def test_budget_shows_each_credential_by_name_never_the_token(database_url, store):
    from datetime import UTC, datetime, timedelta

    from capture.github.budgets import Observed
    from capture.github.ledger import PostgresBudgets

    ledger = PostgresBudgets(store.database("budgets"))
    now = datetime.now(UTC)
    ledger.observe(
        "user:ann", "graphql", Observed(5000, 4200, now + timedelta(minutes=40)), None, now
    )
    shown = json.loads(run(jobs, ["budget", "--json"], database_url).output)
    assert [(r["credential"], r["remaining"], r["used"]) for r in shown] == [
        ("user:ann", 4200, "16%")
    ]
    assert "user:ann" in run(jobs, ["budget"], database_url).output
