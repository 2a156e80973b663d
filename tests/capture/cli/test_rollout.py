"""`bin/jobs rollout`: every control as a user types it, its history, and bad input refused
with nothing written; a stopped lane's worker claims nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from capture.cli.jobs import jobs
from capture.cli.run_job import run_job_command as run_job
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.conftest import assert_refused, count_events


def rollout(url: str, *args: str, env: dict | None = None):
    return CliRunner().invoke(jobs, ["rollout", *args], env={"DATABASE_URL": url, **(env or {})})


def test_controls_as_an_operator_uses_them(store, database_url):
    shown = rollout(database_url, "show", env={"JOBSTORE_ROLLOUT_PERCENT": "40"})
    assert "40% (from environment" in shown.output
    assert rollout(database_url, "percent", "10", "--reason", "canary").exit_code == 0
    assert rollout(database_url, "allow", "acme/widgets", "Acme/Other").exit_code == 0
    assert rollout(database_url, "deny", "acme/huge").exit_code == 0
    assert rollout(database_url, "clear", "acme/other").exit_code == 0
    stopped = rollout(database_url, "stop", "inngest", "--reason", "incident 7")
    assert "inngest: STOPPED (incident 7)" in stopped.output
    state = json.loads(rollout(database_url, "show", "--json").output)
    assert state == {
        "percent": 10.0,
        "percent_from": "events",
        "allow": ["acme/widgets"],
        "deny": ["acme/huge"],
        "stopped": {"inngest": "incident 7"},
    }
    assert rollout(database_url, "resume", "inngest", "--reason", "fixed").exit_code == 0
    assert rollout(database_url, "percent", "env").exit_code == 0
    history = json.loads(rollout(database_url, "history", "--json").output)
    assert [h["change"] for h in history] == [
        "PercentSet",
        "Listed",
        "Listed",
        "Listed",
        "Listed",
        "LaneStopped",
        "LaneResumed",
        "PercentSet",
    ]
    assert history[0]["reason"] == "canary"
    assert history[1]["reason"].startswith("by ")
    text = rollout(database_url, "history").output
    assert "LaneStopped" in text
    assert "incident 7" in text
    assert json.loads(rollout(database_url, "show", "--json").output)["percent_from"].startswith(
        "environment"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["percent", "120"], "'120' is not from 0 to 100"),
        (["percent", "lots"], "is neither a number from 0 to 100 nor 'env'"),
        (["stop", "gitlab"], "Invalid value for '{inngest|github_actions|local}'"),
        (["resume", "inngest"], "inngest is not stopped"),
        (["allow", "not-a-repo"], "repository"),
        (["allow"], "Missing argument 'REPOSITORIES...'"),
        (["stop", "inngest", "--reason", " "], "must say something"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(store, database_url, args, message):
    before = count_events(database_url)
    result = rollout(database_url, *args)
    assert_refused(result, message.replace("'120'", "120"))
    assert count_events(database_url) == before


def test_a_stopped_lanes_worker_claims_nothing(store, database_url):
    spec = JobSpec.create("pr-reviews", "acme/widgets", days=1)
    job_id = store.enqueue(spec, route=Route("local", "explicit", "test")).job_id
    assert rollout(database_url, "stop", "local", "--reason", "maintenance").exit_code == 0
    env = {"DATABASE_URL": database_url, "GITHUB_TOKEN": "ghp_" + "x" * 36}
    result = CliRunner().invoke(run_job, ["--lane", "local"], env=env)
    assert "lane local is stopped (maintenance)" in result.output
    assert store.get(job_id).status.value == "routed"
