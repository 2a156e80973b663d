"""`bin/enqueue`: routing decisions recorded, duplicates recognised, bad input refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from capture.cli.enqueue import enqueue
from tests.conftest import assert_refused, count_events


@pytest.fixture
def run(database_url, store, served):
    def invoke(*args: str, **env: str):
        env = {**served.env, "DATABASE_URL": database_url, **env}
        return CliRunner().invoke(enqueue, list(args), env=env)

    return invoke


@pytest.mark.parametrize(
    ("args", "lane", "rule"),
    [
        (["pr-reviews", "--repo", "acme/w", "--days", "1"], "inngest", "recent"),
        (
            [
                "historical-sync",
                "--repo",
                "acme/w",
                "--since",
                "2024-01-01",
                "--until",
                "2024-06-01",
                "--trigger",
                "backfill",
            ],
            "github_actions",
            "historical",
        ),
        (
            ["pr-details", "--repo", "acme/w", "--prs", "1,2,3", "--trigger", "scheduled"],
            "inngest",
            "recent",
        ),
        (["repository-sync", "--repo", "acme/w", "--lane", "local"], "local", "explicit"),
        (
            ["pr-comments", "--repo", "acme/w", "--days", "30", "--trigger", "webhook"],
            "inngest",
            "small",
        ),
    ],
)
def test_enqueue_routes_and_records_why(run, args, lane, rule):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    status = "routed" if lane == "local" else "dispatched"
    assert (doc["lane"], doc["rule"], doc["status"]) == (lane, rule, status)
    assert doc["reason"]
    assert doc["dispatched"] is (lane != "local")


def test_the_same_request_twice_is_one_job(run):
    first = json.loads(run("pr-reviews", "--repo", "acme/w", "--days", "1", "--json").output)
    again = run("pr-reviews", "--repo", "acme/w", "--days", "1")
    assert again.exit_code == 0
    assert again.output.startswith(f"job {first['job_id']} is already dispatched")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pr-reviews", "--repo", "acme", "--days", "1"], "repository: must be owner/name"),
        (["pr-reviews", "--repo", "-x/y", "--days", "1"], "not a GitHub login"),
        (["pr-reviews", "--repo", "acme/w", "--days", "0"], "Invalid value for '--days'"),
        (["pr-reviews", "--repo", "acme/w", "--days", "-1"], "Invalid value for '--days'"),
        (["pr-reviews", "--repo", "acme/w", "--days", "ten"], "Invalid value for '--days'"),
        (
            ["pr-reviews", "--repo", "acme/w", "--since", "2026-02-01", "--until", "2026-01-01"],
            "since: must be before until",
        ),
        (["pr-reviews", "--repo", "acme/w", "--since", "2026-02-01"], "go together"),
        (
            ["pr-reviews", "--repo", "acme/w", "--since", "soon", "--until", "2026-01-01"],
            "is not an ISO 8601 time",
        ),
        (
            [
                "pr-reviews",
                "--repo",
                "acme/w",
                "--days",
                "1",
                "--since",
                "2026-01-01",
                "--until",
                "2026-01-02",
            ],
            "either days or since/until",
        ),
        (["unknown-type", "--repo", "acme/w"], "Invalid value for '{github-webhooks"),
        (["pr-reviews", "--repo", "acme/w", "--prs", "1,x"], "not a comma-separated list"),
        (["pr-reviews", "--repo", "acme/w", "--prs", "0"], "pr_numbers: must be between 1"),
        (["pr-reviews", "--repo", "acme/w", "--max-items", "0"], "Invalid value for '--max-items'"),
        (["pr-reviews", "--repo", "acme/w", "--trigger", "cron"], "Invalid value for '--trigger'"),
        (
            ["pr-reviews", "--repo", "acme/w", "--priority", "asap"],
            "Invalid value for '--priority'",
        ),
        (["pr-reviews", "--repo", "acme/w", "--lane", "cloud"], "Invalid value for '--lane'"),
        (["pr-reviews", "--repo", "acme/w", "--dedupe-key", ""], "dedupe_key: must be 1-200"),
        (["pr-reviews", "--repo", "acme/w", "--params", "{oops"], "params: is not valid JSON"),
        (["pr-reviews", "--repo", "acme/w", "--params", "[1]"], "params: must be a JSON object"),
        (
            ["pr-reviews", "--repo", "acme/w", "--params", '{"a":' * 900 + "1" + "}" * 900],
            "params: nests deeper than 8 levels",
        ),
        (["pr-reviews", "--days", "1"], "Missing option '--repo'"),
        (
            ["pr-reviews", "--repo", "acme/w", "--since", "2098-01-01", "--until", "2099-01-02"],
            "since: 2098-01-01T00:00:00+00:00 is in the future",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run, database_url, args, message):
    before = count_events(database_url)
    result = run(*args)
    assert_refused(result, message)
    assert count_events(database_url) == before


def test_without_lane_configuration_jobs_run_locally_and_say_why(database_url, store):
    env = {"DATABASE_URL": database_url, "INNGEST_EVENT_KEY": "", "CAPTURE_ACTIONS_REPOSITORY": ""}
    result = CliRunner().invoke(
        enqueue, ["pr-reviews", "--repo", "acme/w", "--days", "1", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert (doc["lane"], doc["rule"]) == ("local", "fallback")
    assert "INNGEST_EVENT_KEY is not set" in doc["reason"]


def test_the_event_key_and_token_never_reach_events_or_output(database_url, store):
    secret_key, token = "evt-key-SECRET-123", "ghp_SECRETTOKEN456"
    env = {
        "DATABASE_URL": database_url,
        "INNGEST_EVENT_KEY": secret_key,
        "INNGEST_EVENT_API_BASE_URL": "http://127.0.0.1:9",  # nothing listens: refused
        "GITHUB_TOKEN": token,
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "CAPTURE_ACTIONS_REPOSITORY": "acme/ops",
    }
    result = CliRunner().invoke(enqueue, ["pr-reviews", "--repo", "acme/w", "--days", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "local" in result.output  # both lanes unreachable: the job is not lost
    import psycopg

    with psycopg.connect(database_url) as conn:
        stored = b"".join(bytes(r[0]) for r in conn.execute("SELECT state FROM jobs_events"))
        errors = " ".join(r[0] or "" for r in conn.execute("SELECT error FROM lane_dispatches"))
    for secret in (secret_key, token):
        assert secret not in result.output
        assert secret.encode() not in stored
        assert secret not in errors
    assert "unreachable" in errors


def test_the_same_window_in_another_zone_is_the_same_job(run):
    first = run(
        "pr-reviews",
        "--repo",
        "acme/w",
        "--since",
        "2026-01-01T02:00:00+02:00",
        "--until",
        "2026-01-02T00:00:00Z",
        "--json",
    )
    again = run(
        "pr-reviews",
        "--repo",
        "acme/w",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-01T19:00:00-05:00",
        "--json",
    )
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    one, other = json.loads(first.output), json.loads(again.output)
    assert (one["job_id"], other["created"]) == (other["job_id"], False)
