"""Projections into plain tables: contents, exactly-once, rebuild, races and restarts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from jobstore import db, views
from jobstore.prices import LanePrice
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.jobstore.workload import make_history

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
TABLES = {
    "capture_jobs": "job_id",
    "job_rollups": "bucket, lane, job_type",
    "job_totals": "lane, job_type",
}


@pytest.fixture
def job_views(store, database_url):
    v = views.open_views(database_url)
    yield v
    v.close()


def rows(url: str, query: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def snapshot(url: str) -> dict[str, list[dict]]:
    return {t: rows(url, f"SELECT * FROM {t} ORDER BY {key}") for t, key in TABLES.items()}


def test_capture_jobs_row_follows_the_job(store, job_views, database_url):
    spec = JobSpec.create("pr-details", "acme/widgets", days=3, pr_numbers=[1, 2])
    job_id = store.enqueue(spec, T0, route=Route("github_actions", "bulk", "big")).job_id
    store.dispatched(job_id, "4242 https://github.com/acme/ops/actions/runs/4242", T0)
    store.claim(job_id, "runner-1", T0 + timedelta(seconds=30), lane="github_actions")
    store.progress(job_id, 1, total=2, cursor="c1", api_points=5, now=T0 + timedelta(seconds=60))
    store.complete(job_id, items=2, api_points=1, now=T0 + timedelta(seconds=150))
    assert views.catch_up(store, job_views) == 6
    (row,) = rows(database_url, "SELECT * FROM capture_jobs")
    assert row["status"] == "completed"
    assert (row["lane"], row["route_rule"], row["route_reason"]) == (
        "github_actions",
        "bulk",
        "big",
    )
    assert (row["external_ref"], row["run_url"]) == (
        "4242",
        "https://github.com/acme/ops/actions/runs/4242",
    )
    # Completed: every item is done, whatever the last checkpoint said.
    assert (row["items"], row["items_done"], row["items_total"], row["api_points"]) == (2, 2, 2, 6)
    assert (row["days"], row["pr_count"], row["worker"]) == (3, 2, "runner-1")
    assert row["run_seconds"] == 120
    assert row["billed_minutes"] == 3  # 120 s and the runner's 40 s setup, rounded up
    assert (row["created_at"], row["started_at"]) == (T0, T0 + timedelta(seconds=30))
    assert row["finished_at"] == T0 + timedelta(seconds=150)
    audit = rows(database_url, "SELECT event, fields FROM job_audit ORDER BY version")
    assert [a["event"] for a in audit] == [
        "Queued",
        "Routed",
        "Dispatched",
        "Started",
        "Progressed",
        "Completed",
    ]
    assert audit[4]["fields"] == {
        "done": 1,
        "total": 2,
        "cursor": "c1",
        "api_points": 5,
        "note": "",
    }


def test_progressive_capture_jobs_has_exactly_the_original_columns(store, job_views, database_url):
    make_history(store, 6, T0)
    views.catch_up(store, job_views)
    result = rows(database_url, "SELECT * FROM progressive_capture_jobs ORDER BY created_at")
    assert list(result[0]) == [
        "id",
        "job_type",
        "repository_id",
        "processor_type",
        "status",
        "time_range_days",
        "workflow_run_id",
        "metadata",
        "error",
        "created_at",
        "started_at",
        "completed_at",
    ]
    # routed, three completed, failed once (a retry is scheduled), cancelled
    assert [r["status"] for r in result] == [
        "pending",
        "completed",
        "completed",
        "completed",
        "pending",
        "cancelled",
    ]
    assert result[1]["workflow_run_id"] == "run-1"  # the github_actions job


def test_lane_stats_counts_and_costs(store, job_views, database_url):
    job_views.set_prices(
        {
            "inngest": LanePrice(per_run=0.01, per_step=0.001),
            "github_actions": LanePrice(per_minute=0.008, free_minutes=1),
        }
    )
    make_history(store, 12, T0)
    views.catch_up(store, job_views)
    stats = {r["lane"]: r for r in rows(database_url, "SELECT * FROM lane_stats")}
    assert (
        sum(stats[lane]["pending"] for lane in ("inngest", "github_actions", "local"))
        == (stats["total"]["pending"])
    )
    assert (
        stats["total"]["pending"]
        + stats["total"]["completed"]
        + stats["total"]["cancelled"]
        + stats["total"]["failed"]
        + stats["total"]["processing"]
        == 12
    )
    costs = rows(database_url, "SELECT * FROM job_costs")
    inngest = sum(c["cost"] for c in costs if c["lane"] == "inngest")
    runs_steps = rows(
        database_url,
        "SELECT sum(runs) AS runs, sum(steps) AS steps FROM capture_jobs WHERE lane = 'inngest'",
    )[0]
    assert inngest == pytest.approx(0.01 * runs_steps["runs"] + 0.001 * runs_steps["steps"])
    minutes = sum(c["billed_minutes"] for c in costs if c["lane"] == "github_actions")
    assert float(stats["github_actions"]["estimated_cost"]) == pytest.approx(
        0.008 * (minutes - 1), abs=1e-4
    )
    assert float(stats["local"]["estimated_cost"]) == 0


def test_repo_coverage_merges_windows_and_reports_gaps(store, job_views, database_url):
    def done(since_days: int, until_days: int) -> None:
        spec = JobSpec.create(
            "historical-sync",
            "acme/w",
            since=T0 - timedelta(days=since_days),
            until=T0 - timedelta(days=until_days),
        )
        job_id = store.enqueue(spec, T0, route=Route("local", "x", "y")).job_id
        store.claim(job_id, "w", T0)
        store.complete(job_id, items=1, now=T0 + timedelta(minutes=since_days))

    done(30, 20)
    done(25, 15)  # overlaps the first: one window 30..15
    done(10, 5)  # a gap from 15 to 10
    views.catch_up(store, job_views)
    (cov,) = rows(database_url, "SELECT * FROM repo_coverage")
    day = lambda n: (T0 - timedelta(days=n)).isoformat()  # noqa: E731
    assert [
        [datetime.fromisoformat(a).isoformat(), datetime.fromisoformat(b).isoformat()]
        for a, b in cov["windows"]
    ] == [[day(30), day(15)], [day(10), day(5)]]
    assert [
        [datetime.fromisoformat(a).isoformat(), datetime.fromisoformat(b).isoformat()]
        for a, b in cov["gaps"]
    ] == [[day(15), day(10)]]
    assert cov["last_success"] == T0 + timedelta(minutes=30)


def test_rebuild_equals_the_incrementally_built_views(store, job_views, database_url):
    ids = make_history(store, 20, T0)
    views.catch_up(store, job_views)  # part of the history, caught up early
    for job_id in ids[:5]:
        if store.get(job_id).status.value == "routed":
            store.cancel(job_id, "late change", T0 + timedelta(hours=5))
    make_history(store, 15, T0 + timedelta(hours=6), seed=2)
    views.catch_up(store, job_views, batch=7)  # many small batches
    incremental = snapshot(database_url)
    assert job_views.rebuild(store, batch=11) > 100  # many batches in one transaction
    assert snapshot(database_url) == incremental
    job_views.rebuild(store)
    assert snapshot(database_url) == incremental
    assert len(incremental["capture_jobs"]) == 35


def test_a_batch_that_fails_midway_leaves_no_trace(store, job_views, database_url):
    make_history(store, 10, T0)
    events = rows(database_url, "SELECT count(*) AS n FROM job_audit")[0]["n"]
    with psycopg.connect(database_url) as conn:  # the database refuses one job of the batch
        conn.execute(
            "ALTER TABLE capture_jobs ADD CONSTRAINT planted CHECK (repository <> 'acme/repo5')"
        )
    with pytest.raises(Exception, match="planted"):
        views.catch_up(store, job_views)
    assert rows(database_url, "SELECT count(*) AS n FROM capture_jobs")[0]["n"] == 0
    assert job_views.position() == 0
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE capture_jobs DROP CONSTRAINT planted")
    assert views.catch_up(store, job_views) == events
    incremental = snapshot(database_url)
    job_views.rebuild(store)
    assert snapshot(database_url) == incremental


def test_two_catch_ups_racing_apply_each_event_once(store, job_views, database_url):
    make_history(store, 30, T0)
    second = views.open_views(database_url)
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda v=v: counts.append(views.catch_up(store, v)))
        for v in (job_views, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    second.close()
    audit = rows(database_url, "SELECT count(*) AS n FROM job_audit")[0]["n"]
    assert sum(counts) == audit  # between them, every event exactly once
    assert sorted(counts)[0] < audit  # the lock made them share the work, not repeat it
    incremental = snapshot(database_url)
    job_views.rebuild(store)
    assert snapshot(database_url) == incremental


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_forever_projector_survives_a_dropped_listen_connection(store, database_url):
    env = db.eventsourcing_env(database_url)
    stop = threading.Event()
    thread = threading.Thread(target=views.project_forever, args=(env, stop, 0.3))
    thread.start()
    try:
        count = lambda: rows(database_url, "SELECT count(*) AS n FROM capture_jobs")[0]["n"]  # noqa: E731
        make_history(store, 3, T0)
        wait_for(lambda: count() == 3)
        with psycopg.connect(database_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            ).fetchone()[0]
        assert killed >= 1
        make_history(store, 6, T0 + timedelta(hours=1), seed=3)
        wait_for(lambda: count() == 9)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.mark.slow
def test_projector_killed_while_projecting_resumes_and_equals_a_rebuild(store, database_url):
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            specs = [JobSpec.create("pr-reviews", f"acme/k{n}-{i}", days=1) for i in range(50)]
            store.enqueue_many(specs, T0, route=Route("local", "x", "y"))
            store.complete_many(store.claim_next("local", "w", T0, limit=50), items=1, now=T0)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    env = {**os.environ, "DATABASE_URL": database_url}
    projector = subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "jobs"), "project", "--forever", "--poll", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: rows(database_url, "SELECT count(*) AS n FROM capture_jobs")[0]["n"] > 100)
    finally:
        projector.send_signal(signal.SIGKILL)
        projector.wait()
        stop.set()
        writer.join()
    v = views.open_views(database_url)
    views.catch_up(store, v)
    resumed = snapshot(database_url)
    v.rebuild(store)
    v.close()
    assert snapshot(database_url) == resumed
    total = rows(database_url, "SELECT count(*) AS n FROM job_heads")[0]["n"]
    assert len(resumed["capture_jobs"]) == total


def test_the_histogram_bounds_are_the_schemas(database_url):
    from jobstore import SECONDS_BOUNDS

    got = rows(database_url, "SELECT jobstore_seconds_bounds() AS b")[0]["b"]
    assert tuple(got) == tuple(float(b) for b in SECONDS_BOUNDS)
