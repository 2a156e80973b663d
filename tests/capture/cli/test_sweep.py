"""`bin/jobs sweep`: dispatches what is left routed, reports in JSON, refuses bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from capture.cli.jobs import jobs
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.conftest import assert_refused, count_events


def test_sweep_dispatches_jobs_left_routed(store, database_url, served):
    spec = JobSpec.create("pr-reviews", "acme/widgets", days=1)
    job_id = store.enqueue(spec, route=Route("inngest", "recent", "test")).job_id
    env = {**served.env, "DATABASE_URL": database_url}
    result = CliRunner().invoke(jobs, ["sweep", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dispatched"] == [str(job_id)]
    assert store.get(job_id).status.value == "dispatched"
    (event,) = served.inngest.events
    assert event["data"]["job_id"] == str(job_id)
    again = CliRunner().invoke(jobs, ["sweep"], env=env)
    assert "dispatched: 0" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--now", "yesterday"], "Invalid value for '--now'"),
        (["sweep", "--now", "2020-01-01"], "is in the past: a sweep appends events dated"),
        (["sweep", "--limit", "0"], "Invalid value for '--limit'"),
        (["sweep", "--interval", "-1"], "Invalid value for '--interval'"),
        (["sweep", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_sweep_bad_input_exits_2(store, database_url, args, message):
    before = count_events(database_url)
    result = CliRunner().invoke(jobs, args, env={"DATABASE_URL": database_url})
    assert_refused(result, message)
    assert count_events(database_url) == before


def test_a_bad_routing_setting_is_bad_input(store, database_url):
    env = {"DATABASE_URL": database_url, "JOBSTORE_ROLLOUT_PERCENT": "150"}
    result = CliRunner().invoke(jobs, ["sweep"], env=env)
    assert result.exit_code == 2
    assert "JOBSTORE_ROLLOUT_PERCENT must be 0..100" in result.output
