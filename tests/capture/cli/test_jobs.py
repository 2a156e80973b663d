"""`bin/jobs` commands on a real database: output, JSON, exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from capture.cli.jobs import jobs
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.conftest import assert_refused, count_events
from tests.jobstore.workload import make_history

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
def run(database_url):
    def invoke(*args: str):
        result = CliRunner().invoke(jobs, list(args), env={"DATABASE_URL": database_url})
        return result

    return invoke


@pytest.fixture
def history(store):
    return make_history(store, 12, T0)


def test_list_filters_and_json(run, history):
    result = run("list", "--lane", "local", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert len(listed) == 4
    assert {row["lane"] for row in listed} == {"local"}
    assert run("list", "--status", "cancelled", "--json").output.count('"cancelled"') >= 2
    assert len(json.loads(run("list", "--repo", "ACME/repo1", "--json").output)) == 2
    assert len(json.loads(run("list", "--limit", "3", "--json").output)) == 3
    since = (T0 + timedelta(minutes=10)).isoformat()
    assert len(json.loads(run("list", "--since", since, "--json").output)) == 2


def test_list_prints_an_aligned_table(run, history):
    lines = run("list", "--type", "pr-reviews").output.splitlines()
    assert lines[0].split()[:3] == ["job_id", "job_type", "repository"]
    assert len(lines) == 13
    assert lines[1].index("pr-reviews") == lines[0].index("job_type")


def test_show_prints_the_history_and_the_state_at_a_time(run, history, store):
    job_id = str(history[1])  # completed on github_actions
    doc = json.loads(run("show", job_id, "--json").output)
    assert [e["event"] for e in doc["events"]][:4] == ["Queued", "Routed", "Dispatched", "Started"]
    assert doc["state"]["status"] == "completed"
    before_start = (T0 + timedelta(minutes=1, seconds=1)).isoformat()
    earlier = json.loads(run("show", job_id, "--at", before_start, "--json").output)
    assert earlier["state"]["status"] == "dispatched"
    assert "Completed" in run("show", job_id).output


def test_show_and_cancel_take_the_prefix_list_prints(run, history, store):
    job_id = str(history[0])
    listed = run("list", "--limit", "100").output
    assert job_id in listed  # list shows whole ids; any unique prefix of one will do
    shown = json.loads(run("show", job_id[:8], "--json").output)
    assert shown["job_id"] == job_id
    active = [str(j) for j in history if not store.get(j).status.is_final]
    done = run("cancel", active[0][:8].upper(), "--reason", "by prefix")
    assert done.exit_code == 0, done.output
    assert store.get(active[0]).status.value == "cancelled"


def test_an_ambiguous_prefix_names_the_jobs_it_matches(run, store, database_url):
    by_first: dict[str, list[str]] = {}
    n = 0
    while not any(len(ids) > 1 for ids in by_first.values()):  # 17 jobs at most
        spec = JobSpec.create("pr-reviews", f"acme/prefix{n}", days=1)
        job_id = str(store.enqueue(spec, T0, Route("local", "explicit", "t")).job_id)
        by_first.setdefault(job_id[0], []).append(job_id)
        n += 1
    shared, ids = next((k, v) for k, v in by_first.items() if len(v) > 1)
    before = count_events(database_url)
    result = run("cancel", shared)
    assert_refused(result, f"job id {shared!r} matches several jobs")
    assert all(job_id in result.output for job_id in ids)
    assert count_events(database_url) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "00000000-0000-0000-0000-000000000000"], "no job with id"),
        (["show", "not-an-id"], "'not-an-id' is neither a job id nor the start of one"),
        (["show", "ffffffff-f"], "no job with id ffffffff-f"),
        (["show", "JOB", "--at", "yesterday"], "'yesterday' is not an ISO 8601 time"),
        (["show", "JOB", "--at", "2000-01-01"], "did not exist yet"),
        (["list", "--status", "lost"], "Invalid value for '--status'"),
        (["list", "--lane", "cloud"], "Invalid value for '--lane'"),
        (["list", "--limit", "0"], "Invalid value for '--limit'"),
        (["list", "--limit", "ten"], "Invalid value for '--limit'"),
        (["list", "--since", "last week"], "is not an ISO 8601 time"),
        (["watch", "--interval", "0"], "Invalid value for '--interval'"),
        (["project", "--poll", "-1"], "Invalid value for '--poll'"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(
    run, history, database_url, args, message
):
    args = [str(history[0]) if a == "JOB" else a for a in args]
    before = count_events(database_url)
    result = run(*args)
    assert_refused(result, message)
    assert count_events(database_url) == before


def test_stats_has_the_hybrid_queue_stats_shape_and_the_saving(run, history):
    doc = json.loads(run("stats", "--json").output)
    for lane in ("inngest", "github_actions", "total"):
        assert {"pending", "processing", "completed", "failed"} <= doc[lane].keys()
    assert doc["total"]["completed"] == sum(
        doc[lane]["completed"] for lane in ("inngest", "github_actions", "local")
    )
    assert doc["cost"]["all_inngest_baseline"] > 0
    assert doc["cost"]["saving"] == pytest.approx(
        doc["cost"]["all_inngest_baseline"] - doc["cost"]["actual"], abs=1e-3
    )
    text = run("stats").output
    assert "against all-Inngest" in text


def test_watch_once_shows_active_jobs_with_progress_bars(run, history):
    output = run("watch", "--once").output
    assert "[" in output
    assert "routed" in output


def test_project_and_rebuild(run, history, store):
    assert run("project").output.startswith("applied ")
    assert run("rebuild").output.strip().startswith("rebuilt from ")


def test_every_command_has_help(run):
    for name in [None, *jobs.commands]:
        result = run(*(["--help"] if name is None else [name, "--help"]))
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_cancel_ends_a_job_and_refuses_what_cannot_be_cancelled(store, database_url):
    from click.testing import CliRunner

    from capture.cli.jobs import jobs as jobs_group
    from jobstore.spec import JobSpec

    job_id = store.enqueue(
        JobSpec.create("pr-reviews", "acme/cancel", days=1),
        route=Route("local", "explicit", "t"),
    ).job_id
    env = {"DATABASE_URL": database_url}
    done = CliRunner().invoke(jobs_group, ["cancel", str(job_id), "--reason", "duplicate"], env=env)
    assert done.exit_code == 0, done.output
    assert store.get(job_id).status.value == "cancelled"
    for args, message in (
        (["cancel", str(job_id)], "is cancelled: cannot cancel"),
        (["cancel", "nope"], "'nope' is neither a job id nor the start of one"),
        (["cancel", str(job_id), "--reason", " "], "Invalid value for '--reason'"),
    ):
        again = CliRunner().invoke(jobs_group, args, env=env)
        assert_refused(again, message)


def test_reading_scripts_work_on_a_read_only_database(run, history, database_url, server_url):
    """A read replica or a demoted primary: list, show and stats read, nothing is written."""
    import psycopg

    assert run("project").exit_code == 0  # the views as the primary last projected them
    before = count_events(database_url)
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        listed = run("list", "--json")
        assert listed.exit_code == 0, listed.output
        assert len(json.loads(listed.stdout)) == 12
        assert "read-only" in listed.stderr
        assert run("show", str(history[1])[:8]).exit_code == 0
        assert run("stats", "--json").exit_code == 0
        refused = run("cancel", str(history[0]))
        assert refused.exit_code == 1
        assert refused.output.strip().splitlines() == [
            next(line for line in refused.output.splitlines() if "read-only" in line)
        ]
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    assert count_events(database_url) == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBSTORE_PRICES": "/nonexistent/prices.toml"}, "JOBSTORE_PRICES: cannot read"),
        (
            {"DATABASE_URL": "", "JOBSTORE_HOME": "/dev/null/home"},
            "JOBSTORE_HOME /dev/null/home cannot hold the server",
        ),
    ],
)
def test_bad_settings_are_one_line_not_a_traceback(database_url, env, message):
    result = CliRunner().invoke(jobs, ["stats"], env={"DATABASE_URL": database_url, **env})
    assert_refused(result, message)


def failed_for_good(store, n: int, error: str = "HTTP 503 during the incident") -> list:
    ids = []
    for i in range(n):
        spec = JobSpec.create("pr-reviews", f"acme/{error[:8].replace(' ', '-')}{i}", days=1)
        job_id = store.enqueue(spec, T0, Route("local", "explicit", "t")).job_id
        store.claim(job_id, "w", T0)
        store.fail(job_id, "server_error", error, retryable=False, attempt=1, now=T0)
        ids.append(job_id)
    return ids


def test_bulk_retry_replays_failed_jobs_once_and_a_second_run_changes_nothing(
    run, history, store, database_url
):
    failed = failed_for_good(store, 3)
    failed_for_good(store, 1, error="HTTP 404: gone")  # not this incident
    attempts = {j: store.get(j).attempt for j in failed}
    before = count_events(database_url)
    dry = run("retry", "--error", "incident", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert count_events(database_url) == before
    first = json.loads(run("retry", "--error", "incident", "--json").output)
    assert sorted(first["retried"]) == sorted(str(j) for j in failed)
    for job_id in failed:
        job = store.get(job_id)
        assert (job.status.value, job.attempt) == ("retry_scheduled", attempts[job_id] + 1)
    after = count_events(database_url)
    again = json.loads(run("retry", "--error", "incident", "--json").output)
    assert again["retried"] == []
    assert count_events(database_url) == after


def test_retry_leaves_a_job_another_active_job_replaced(run, store):
    spec = JobSpec.create("pr-reviews", "acme/replaced", days=1)
    old = store.enqueue(spec, T0, Route("local", "explicit", "t")).job_id
    store.claim(old, "w", T0)
    store.fail(old, "boom", "x", retryable=False, attempt=1, now=T0)
    newer = store.enqueue(spec, T0, Route("local", "explicit", "t"))
    assert newer.created
    result = json.loads(run("retry", str(old), "--json").output)
    assert (result["retried"], result["unchanged"]) == ([], [str(old)])
    assert store.get(old).status.value == "failed"


def test_bulk_cancel_by_filters(run, history, store):
    active = [j for j in history if not store.get(j).is_final]
    assert active
    done = run("cancel", "--since", T0.isoformat(), "--reason", "incident 42")
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"cancelled {len(active)} jobs")
    assert all(store.get(j).is_final for j in history)
    assert run("cancel", "--since", T0.isoformat()).output.startswith("cancelled 0 jobs")
    refused = run("cancel")
    assert_refused(refused, "give JOB_ID, or at least one filter")
    both = run("cancel", str(history[0]), "--lane", "local")
    assert_refused(both, "give JOB_ID or filters, not both")


@pytest.mark.parametrize(
    ("done", "total", "status", "items", "shown"),
    [
        (0, None, "completed", 0, "nothing to do"),
        (0, 0, "running", 0, "nothing to do"),
        (0, None, "completed", 7, "[####################] 7/7"),
        (3, None, "running", 0, "3 so far"),
        (5, 10, "running", 0, "[##########..........] 5/10"),
        (2, None, "failed", 0, "2"),
    ],
)
def test_progress_never_shows_question_marks(done, total, status, items, shown):
    from capture.cli.render import progress_bar

    assert progress_bar(done, total, status=status, items=items) == shown
