"""`bin/run-job --job-id`: exit codes, one-line errors, nothing written on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from capture.cli.run_job import run_job_command
from jobstore.routing import Route
from tests.conftest import ROOT, assert_refused, count_events
from tests.jobstore.test_views import wait_for


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--job-id", "00000000-0000-0000-0000-000000000000"], {}, "no job with id"),
        (["--job-id", "nope"], {}, "'nope' is neither a job id nor the start of one"),
        (["--job-id", "fffffff"], {}, "no job with id fffffff"),
        ([], {}, "give --job-id ID, or --lane LANE"),
        (
            ["--job-id", "x", "--watch"],
            {},
            "--max-jobs, --watch and --concurrency work a lane's queue",
        ),
        (["--lane", "local", "--max-jobs", "0"], {}, "Invalid value for '--max-jobs'"),
        (["--lane", "local", "--max-jobs", "two"], {}, "Invalid value for '--max-jobs'"),
        (["--lane", "local", "--poll", "0"], {}, "Invalid value for '--poll'"),
        (
            ["--job-id", "abc", "--concurrency", "2"],
            {},
            "--max-jobs, --watch and --concurrency work a lane's queue",
        ),
        (["--lane", "local", "--concurrency", "0"], {}, "Invalid value for '--concurrency'"),
        (
            ["--lane", "local"],
            {"CAPTURE_WORKER_CONCURRENCY": "many"},
            "Invalid value for '--concurrency'",
        ),
        (["--lane", "local"], {"CAPTURE_MAX_ITEMS": "-3"}, "CAPTURE_MAX_ITEMS must be"),
        (["--job-id", "x", "--attempt", "0"], {}, "Invalid value for '--attempt'"),
        (["--job-id", "x", "--lane", "cloud"], {}, "Invalid value for '--lane'"),
        (["--job-id", "x"], {"CAPTURE_BATCH_SIZE": "lots"}, "CAPTURE_BATCH_SIZE must be"),
    ],
)
def test_bad_input_exits_2_with_one_line(database_url, store, args, env, message):
    before = count_events(database_url)
    result = CliRunner().invoke(run_job_command, args, env={"DATABASE_URL": database_url, **env})
    assert_refused(result, message)
    assert count_events(database_url) == before


def test_without_a_token_nothing_is_claimed_and_it_says_why(database_url, store):
    from jobstore.spec import JobSpec

    job_id = store.enqueue(
        JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=[1]),
        route=Route("local", "explicit", "test"),
    ).job_id
    before = count_events(database_url)
    env = {"DATABASE_URL": database_url, "GITHUB_TOKEN": "", "GH_TOKEN": ""}
    for args in (["--job-id", str(job_id)], ["--lane", "local"]):
        result = CliRunner().invoke(run_job_command, args, env=env)
        assert_refused(
            result, "GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set"
        )
    assert store.get(job_id).status.value == "routed"
    assert count_events(database_url) == before


def test_a_refused_token_claims_nothing_and_a_worker_stops_claiming(database_url, store, served):
    from jobstore.spec import JobSpec

    ids = [
        store.enqueue(
            JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=[n]),
            route=Route("local", "explicit", "test"),
        ).job_id
        for n in (1, 2, 3)
    ]
    before = count_events(database_url)
    env = {**served.env, "DATABASE_URL": database_url, "GITHUB_TOKEN": "revoked-token"}
    one = CliRunner().invoke(run_job_command, ["--job-id", str(ids[0])], env=env)
    assert one.exit_code == 1
    assert one.output.strip() == (
        f"Error: job {ids[0]} not claimed: GitHub refused the token "
        f"(HTTP 401 from {served.env['GITHUB_API_URL']}/rate_limit)"
    )
    lane = CliRunner().invoke(run_job_command, ["--lane", "local"], env=env)
    assert "not claiming: GitHub refused the token" in lane.output
    assert "revoked-token" not in one.output + lane.output
    assert [store.get(i).status.value for i in ids] == ["routed"] * 3  # the queue is intact
    assert count_events(database_url) == before


def test_running_a_job_on_another_lane_by_hand_records_the_route(database_url, store, served):
    from jobstore.spec import JobSpec

    job_id = store.enqueue(
        JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=[1]),
        route=Route("inngest", "recent", "test"),
    ).job_id
    env = {**served.env, "DATABASE_URL": database_url}
    done = CliRunner().invoke(
        run_job_command, ["--job-id", str(job_id)[:8], "--lane", "local"], env=env
    )
    assert done.exit_code == 0, done.output
    names = [type(e).__name__ for e in store.history(job_id)]
    assert names == ["Queued", "Routed", "Routed", "Started", "Completed"]
    routed, started = store.history(job_id)[2:4]
    assert (type(routed).__name__, routed.lane, routed.rule) == ("Routed", "local", "explicit")
    assert "it was routed to inngest" in routed.reason
    assert (type(started).__name__, started.lane) == ("Started", "local")


@pytest.fixture
def slow_github(world):
    """The sandbox over HTTP, answering slowly enough for a signal to land mid-job."""
    from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox

    running = Sandbox(world, Options(latency=0.3)).serve()
    yield {
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_API_URL": running.url,
        "GITHUB_GRAPHQL_URL": f"{running.url}/graphql",
        "CAPTURE_BATCH_SIZE": "5",
    }
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_releases_the_attempt_at_once(database_url, store, slow_github, signum, code):
    from jobstore.spec import JobSpec

    job_id = store.enqueue(
        JobSpec.create("historical-sync", "acme/widgets", days=3650, trigger="backfill"),
        route=Route("local", "explicit", "test"),
    ).job_id
    process = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "run-job", "--job-id", str(job_id)],
        env={**os.environ, **slow_github, "DATABASE_URL": database_url},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: store.get(job_id).status.value == "running", timeout=60)
    process.send_signal(signum)
    _, err = process.communicate(timeout=90)  # a loaded CI machine is slow to exit
    assert process.returncode == code, err
    assert "releasing the attempt at its last checkpoint" in err
    assert "Traceback" not in err
    failed, retry = store.history(job_id)[-2:]
    assert (type(failed).__name__, failed.error_type, failed.retryable) == (
        "Failed",
        "interrupted",
        True,
    )
    assert type(retry).__name__ == "RetryScheduled"
    assert store.get(job_id).status.value == "retry_scheduled"  # not left "running"


@pytest.mark.slow
def test_a_worker_at_concurrency_releases_every_job_in_hand_on_a_second_signal(
    database_url, store, slow_github
):
    from jobstore.spec import JobSpec

    ids = [
        store.enqueue(
            JobSpec.create("historical-sync", "acme/widgets", days=days, trigger="backfill"),
            route=Route("local", "explicit", "test"),
        ).job_id
        for days in (3650, 3000, 2500)
    ]
    process = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "run-job", "--lane", "local", "--concurrency", "3"],
        env={**os.environ, **slow_github, "DATABASE_URL": database_url},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    running = lambda: all(store.get(j).status.value == "running" for j in ids)  # noqa: E731
    wait_for(running, timeout=60)  # three at once, on one process
    process.send_signal(signal.SIGTERM)  # finish what is in hand ...
    while "finishing the job in hand" not in (line := process.stderr.readline()):
        assert line, "the worker ended without acknowledging the signal"
    assert all(store.get(j).status.value == "running" for j in ids)
    process.send_signal(signal.SIGTERM)  # ... no: release it
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143, err
    assert "releasing the attempt at its last checkpoint" in err
    assert "Traceback" not in err
    for job_id in ids:
        failed = [e for e in store.history(job_id) if type(e).__name__ == "Failed"]
        assert [(e.error_type, e.retryable) for e in failed] == [("interrupted", True)]
        assert store.get(job_id).status.value == "retry_scheduled"  # none left "running"


def test_a_run_does_its_leader_then_the_jobs_that_ride_it(database_url, store, served, world):
    """A batch of small refreshes in one Actions run: `bin/run-job --job-id LEADER` does
    the leader, then each rider, each its own job with its own events and result."""
    from datetime import UTC, datetime, timedelta

    from jobstore.spec import JobSpec

    for name in ("acme/small1", "acme/small2"):
        world.add_repository(name, 3, 30)
    now = datetime.now(UTC)
    ids = []
    for name in ("acme/widgets", "acme/small1", "acme/small2"):
        spec = JobSpec.create("repository-refresh", name, since=now - timedelta(days=2), until=now)
        ids.append(store.enqueue(spec, route=Route("github_actions", "no-urgency", "t")).job_id)
    leader, *riders = ids
    store.dispatched(leader, "99 https://run/99")
    for rider in riders:
        store.dispatched(rider, "99 https://run/99 (batch of leader)")
        store.heads.batched(rider, 1, leader, 1, now)
    env = {**served.env, "DATABASE_URL": database_url}
    done = CliRunner().invoke(
        run_job_command,
        ["--job-id", str(leader), "--attempt", "1", "--lane", "github_actions"],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert [store.get(i).status.value for i in ids] == ["completed"] * 3
    for rider in riders:
        started = next(e for e in store.history(rider) if type(e).__name__ == "Started")
        assert f"(batch of {leader})" in started.worker
        assert f"job {rider}: completed" in done.output


@pytest.mark.slow
def test_sigterm_while_a_rider_runs_releases_it_and_leaves_the_rest_to_the_sweeper(
    database_url, store, slow_github
):
    """A batch's run stopped mid-rider (a runner cancelled): the leader's work is kept,
    the rider in hand is released for a retry, the ones not started stay dispatched and
    the sweeper's start deadline sends them again. Nothing is lost or done twice."""
    from datetime import UTC, datetime, timedelta

    from jobstore.spec import JobSpec

    now = datetime.now(UTC)
    ids = []
    for days in (1, 3650, 2):
        spec = JobSpec.create(
            "historical-sync" if days == 3650 else "repository-refresh",
            "acme/widgets",
            since=now - timedelta(days=days),
            until=now,
            dedupe_key=f"batch-{days}",
        )
        ids.append(store.enqueue(spec, route=Route("github_actions", "no-urgency", "t")).job_id)
    leader, slow, last = ids
    store.dispatched(leader, "99 https://run/99")
    for order, rider in enumerate((slow, last)):  # riders run in the order batched
        store.dispatched(rider, "99 https://run/99 (batch of leader)")
        store.heads.batched(rider, 1, leader, 1, now + timedelta(seconds=order))
    process = subprocess.Popen(
        [
            *(sys.executable, ROOT / "bin" / "run-job", "--job-id", str(leader)),
            *("--attempt", "1", "--lane", "github_actions"),
        ],
        env={**os.environ, **slow_github, "DATABASE_URL": database_url},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: store.get(slow).status.value == "running", timeout=90)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert store.get(leader).status.value == "completed"
    assert store.get(slow).status.value == "retry_scheduled"  # released, not left running
    assert store.get(last).status.value == "dispatched"  # its deadline brings it back
