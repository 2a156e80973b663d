"""A job no load survives (params nested 5,000 deep, written before the spec refused them)
stops nothing: the sweeper, a worker and the views set it aside (quarantined, said once)
and go on; `bin/jobs show` says so in one line; `bin/jobs quarantined` lists it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
from click.testing import CliRunner

from capture.cli.jobs import jobs
from capture.cli.run_job import run_job_command
from jobstore.routing import Route
from jobstore.spec import JobSpec


def poisoned(store, database_url: str, lane: str, depth: int = 5000):
    """A job whose Queued event's params nest `depth` deep, as an older release (or a bug)
    could have written it past today's validation: rewritten in place, the event log's
    guards off for this session."""
    spec = JobSpec.create("pr-details", "acme/widgets", pr_numbers=[99], params={"p": "MARK"})
    job_id = store.enqueue(spec, route=Route(lane, "explicit", "test")).job_id
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no triggers: a raw rewrite
        (state,) = conn.execute(
            "SELECT state FROM jobs_events WHERE originator_id = %s AND originator_version = 1",
            (job_id,),
        ).fetchone()
        deep = '{"x":' * depth + "1" + "}" * depth
        assert b'"MARK"' in bytes(state)
        conn.execute(
            "UPDATE jobs_events SET state = %s WHERE originator_id = %s AND originator_version = 1",
            (bytes(state).replace(b'"MARK"', deep.encode()), job_id),
        )
    return job_id


def heads_status(database_url: str, job_id) -> str:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT status FROM job_heads WHERE job_id = %s", (job_id,)).fetchone()[
            0
        ]


def test_the_sweeper_sets_an_unreadable_job_aside_and_dispatches_the_rest(
    store, database_url, served
):
    bad = poisoned(store, database_url, "inngest")
    good = store.enqueue(
        JobSpec.create("pr-reviews", "acme/widgets", days=1), route=Route("inngest", "recent", "t")
    ).job_id
    env = {**served.env, "DATABASE_URL": database_url}
    first = CliRunner().invoke(jobs, ["sweep", "--json"], env=env)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["quarantined"] == [str(bad)]
    assert report["dispatched"] == [str(good)]
    assert heads_status(database_url, bad) == "quarantined"
    again = CliRunner().invoke(jobs, ["sweep", "--json"], env=env)  # out of every queue now
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["quarantined"] == []

    shown = CliRunner().invoke(jobs, ["show", str(bad)], env=env)
    assert shown.exit_code == 1
    assert f"job {bad} cannot be read (MapperDeserialisationError (RecursionError)" in (
        shown.output
    )
    assert "Traceback" not in shown.output
    assert len(shown.output.strip().splitlines()) == 1

    listed = CliRunner().invoke(jobs, ["quarantined", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["job_id"], row["found_by"], row["job_type"]) == (str(bad), "sweeper", "pr-details")
    assert row["error"].startswith("MapperDeserialisationError (RecursionError)")


def test_a_worker_sets_an_unreadable_job_aside_and_works_the_rest(store, database_url, served):
    bad = poisoned(store, database_url, "local")
    good = store.enqueue(
        JobSpec.create("pr-details", "acme/widgets", pr_numbers=[1]),
        route=Route("local", "explicit", "t"),
    ).job_id
    env = {**served.env, "DATABASE_URL": database_url}
    done = CliRunner().invoke(run_job_command, ["--lane", "local"], env=env)
    assert done.exit_code == 0, done.output
    assert "1 jobs, 0 failed" in done.output
    assert store.get(good).status.value == "completed"
    assert heads_status(database_url, bad) == "quarantined"
    (row,) = store.quarantined()
    assert row["found_by"].startswith("worker ")


def test_the_views_skip_what_they_cannot_read(store, database_url):
    from jobstore import catch_up, open_views

    bad = poisoned(store, database_url, "local")
    good = store.enqueue(
        JobSpec.create("pr-reviews", "acme/widgets", days=1), route=Route("local", "explicit", "t")
    ).job_id
    views = open_views(store)
    assert catch_up(store, views) > 0  # past the bad event, not stopped by it
    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute("SELECT job_id, status FROM capture_jobs").fetchall())
    assert rows.get(good) == "routed"
    assert bad not in rows
    assert heads_status(database_url, bad) == "quarantined"
    assert catch_up(store, views) == 0  # and it does not come back


def test_a_quarantined_job_fires_an_alert_and_shows_in_the_metrics(store, database_url, served):
    from prometheus_client.parser import text_string_to_metric_families

    from capture.freshness.registry import Registry
    from capture.github.ledger import PostgresBudgets
    from capture.ops import alerts
    from capture.ops.health import snapshot
    from capture.ops.metrics import render
    from jobstore.dispatcher import Dispatcher

    bad = poisoned(store, database_url, "local")
    env = {**served.env, "DATABASE_URL": database_url}
    assert CliRunner().invoke(run_job_command, ["--lane", "local"], env=env).exit_code == 0
    health = snapshot(
        store.database("reads"),
        Dispatcher(store, {}),
        PostgresBudgets(store.database("budgets")),
        Registry(store.database("registry")),
        datetime.now(UTC),
    )
    assert health.quarantined == [str(bad)]
    (change,) = [c for c in alerts.firing(health) if c.rule == "JobsQuarantined"]
    assert str(bad) in change.detail
    metrics = {f.name: f for f in text_string_to_metric_families(render(health).decode())}
    assert metrics["prcapture_jobs_quarantined"].samples[0].value == 1


def test_listing_the_quarantined_reads_an_index_not_every_row(store, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(  # a year of a bad habit: twenty thousand set aside
            "INSERT INTO quarantined_jobs (job_id, found_by, error, first_at, last_at) "
            "SELECT gen_random_uuid(), 'sweeper', 'x', now(), now() - make_interval(secs => g) "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE quarantined_jobs")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT q.job_id FROM quarantined_jobs q LEFT JOIN job_heads h "
                "USING (job_id) ORDER BY q.last_at DESC LIMIT 100"
            )
        )
    assert "quarantined_jobs_last_at" in plan, plan
    assert len(store.quarantined(100)) == 100
