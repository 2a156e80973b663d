"""Retention that keeps the audit trail: archived jobs read as before, a crash mid-archive
loses and doubles nothing, a rebuild from the live log plus the archive gives the same
tables, and what stays live keeps working."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

import jobstore
from capture.cli.jobs import jobs
from devtools.bench.history import build
from jobstore import InvalidTransition, JobSpec, Route, archive, catch_up, open_views, reads
from jobstore.settings import Settings
from tests.conftest import assert_refused

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "capture_jobs": "job_id",
    "job_rollups": "bucket, lane, job_type",
    "job_totals": "lane, job_type",
}


def rows(url: str, query: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def tables(url: str) -> dict[str, list[dict]]:
    """The read tables; sums of seconds to the millisecond (floats added in another order
    differ in their last bits)."""
    return {
        t: [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            for row in rows(url, f"SELECT * FROM {t} ORDER BY {key}")
        ]
        for t, key in TABLES.items()
    }


@pytest.fixture
def views(store):
    v = open_views(store)
    yield v
    v.close()


@pytest.fixture
def history(store, views):
    """300 finished jobs over 60 days (half older than 30), and 20 live ones."""
    slots = build(store, 300, NOW - timedelta(days=60), NOW - timedelta(hours=2), repos=40)
    build(store, 20, NOW - timedelta(hours=1), NOW, live=True, slots=slots, seed=8)
    catch_up(store, views)


def test_an_archived_job_reads_as_before(store, views, history, database_url):
    old = [
        r["job_id"]
        for r in rows(
            database_url,
            "SELECT job_id FROM job_heads WHERE last_event_at < %s ORDER BY job_id LIMIT 25",
            (NOW - timedelta(days=31),),
        )
    ]
    before = {j: reads.job_history(store, str(j)) for j in old}
    mid = {j: reads.job_history(store, str(j), before[j]["events"][1]["time"]) for j in old}
    cli_before = CliRunner().invoke(jobs, ["show", str(old[0])], env={"DATABASE_URL": database_url})
    report = archive.archive(store.database("t"), timedelta(days=30), NOW, batch=40)
    assert report.jobs > 100
    assert report.chunks >= 3
    live = {r["originator_id"] for r in rows(database_url, "SELECT originator_id FROM jobs_events")}
    assert not live & set(old)  # their events left the live log
    fresh = jobstore.open_store(Settings(), url=database_url)  # none of them cached
    try:
        for j in old:
            assert reads.job_history(fresh, str(j)) == before[j]
            assert reads.job_history(fresh, str(j), before[j]["events"][1]["time"]) == mid[j]
    finally:
        fresh.close()
    cli_after = CliRunner().invoke(jobs, ["show", str(old[0])], env={"DATABASE_URL": database_url})
    assert cli_after.exit_code == 0
    assert cli_after.output == cli_before.output


def test_a_rebuild_from_the_live_log_and_the_archive_gives_the_same_tables(
    store, views, history, database_url
):
    archive.archive(store.database("t"), timedelta(days=30), NOW, batch=64)
    catch_up(store, views)
    incremental = tables(database_url)
    assert incremental["job_rollups"]
    assert incremental["job_totals"]
    views.rebuild(store)
    assert tables(database_url) == incremental


def test_stats_and_counters_do_not_move_when_jobs_are_archived(store, views, history, database_url):
    db = store.database("reads")
    before = reads.lane_statistics(db)
    totals = reads.totals(db)
    archive.archive(store.database("t"), timedelta(days=30), NOW)
    catch_up(store, views)
    assert reads.lane_statistics(db) == before
    assert reads.totals(db) == totals


def test_a_replay_of_an_archived_failed_job_is_refused_and_writes_nothing(
    store, views, database_url
):
    spec = JobSpec.create("pr-reviews", "acme/old", days=1)
    t0 = NOW - timedelta(days=40)
    job_id = store.enqueue(spec, t0, route=Route("local", "explicit", "t")).job_id
    store.claim(job_id, "w", t0)
    store.fail(job_id, "github", "HTTP 500", retryable=False, now=t0)
    catch_up(store, views)
    assert archive.archive(store.database("t"), timedelta(days=30), NOW).jobs == 1
    events = rows(database_url, "SELECT count(*) AS n FROM jobs_events")[0]["n"]
    with pytest.raises(InvalidTransition, match="archived"):
        store.replay(job_id, NOW)
    assert rows(database_url, "SELECT count(*) AS n FROM jobs_events")[0]["n"] == events
    # the same work enqueued anew is a new job, once
    again = store.enqueue(spec, NOW, route=Route("local", "explicit", "t"))
    assert again.created
    assert again.job_id != job_id
    assert not store.enqueue(spec, NOW, route=Route("local", "explicit", "t")).created


def test_dedupe_slots_keep_only_what_is_read(store, views, database_url):
    spec = JobSpec.create("pr-reviews", "acme/busy", days=1, dedupe_key="refresh:acme/busy")
    for day in range(5):
        at = NOW - timedelta(days=50 - day)
        job_id = store.enqueue(spec, at, route=Route("local", "explicit", "t")).job_id
        store.claim(job_id, "w", at)
        store.complete(job_id, 1, now=at)
    catch_up(store, views)
    slot = rows(
        database_url,
        "SELECT originator_id FROM jobs_events WHERE topic LIKE '%%DedupeSlot%%' LIMIT 1",
    )[0]["originator_id"]
    count = "SELECT originator_version AS v FROM jobs_events WHERE originator_id = %s ORDER BY 1"
    assert [r["v"] for r in rows(database_url, count, (slot,))] == [1, 2, 3, 4, 5]
    report = archive.archive(store.database("t"), timedelta(days=30), NOW)
    assert (report.jobs, report.slot_events) == (5, 3)
    assert [r["v"] for r in rows(database_url, count, (slot,))] == [1, 5]
    fresh = store.enqueue(spec, NOW, route=Route("local", "explicit", "t"))
    assert fresh.created
    assert not store.enqueue(spec, NOW, route=Route("local", "explicit", "t")).created
    assert [r["v"] for r in rows(database_url, count, (slot,))] == [1, 5, 6]


def test_dry_run_and_bad_input_write_nothing(store, views, history, database_url):
    env = {"DATABASE_URL": database_url}
    size = rows(database_url, "SELECT count(*) AS n FROM jobs_events")[0]["n"]
    dry = CliRunner().invoke(
        jobs,
        ["archive", "--older-than", "30d", "--dry-run", "--now", NOW.isoformat(), "--json"],
        env=env,
    )
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["dry_run"]
    assert doc["jobs"] > 100
    assert rows(database_url, "SELECT count(*) AS n FROM jobs_events")[0]["n"] == size
    assert rows(database_url, "SELECT count(*) AS n FROM job_archive")[0]["n"] == 0
    assert_refused(
        CliRunner().invoke(jobs, ["archive", "--older-than", "30x"], env=env),
        "'30x' is not a duration like 30d",
    )
    assert_refused(
        CliRunner().invoke(jobs, ["archived", "--export", "2026-13"], env=env),
        "'2026-13' is not a month like 2026-01",
    )


def test_the_cli_archives_lists_and_exports(store, views, history, database_url):
    env = {"DATABASE_URL": database_url}
    done = CliRunner().invoke(
        jobs, ["archive", "--older-than", "30d", "--now", NOW.isoformat(), "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    listed = CliRunner().invoke(jobs, ["archived", "--json"], env=env)
    months = json.loads(listed.output)
    assert sum(m["jobs"] for m in months) == doc["jobs"]
    assert all(m["stored_bytes"] < m["raw_bytes"] / 5 for m in months)  # compressed in bulk
    export = CliRunner().invoke(jobs, ["archived", "--export", months[0]["month"]], env=env)
    lines = [json.loads(line) for line in export.output.splitlines()]
    queued = [line for line in lines if line["event"] == "Queued"]
    assert len(queued) == months[0]["jobs"]
    assert {"job_id", "version", "at", "event", "fields"} <= set(lines[0])
    again = CliRunner().invoke(
        jobs, ["archive", "--older-than", "30d", "--now", NOW.isoformat(), "--json"], env=env
    )
    assert json.loads(again.output)["jobs"] == 0  # idempotent: nothing left to take


def test_the_sweeper_archives_on_its_schedule(store, views, history, database_url):
    from jobstore import Dispatcher, sweep

    report = sweep(Dispatcher(store, {}), NOW)
    assert report.archived > 100
    assert archive.archivable(store.database("t"), NOW - timedelta(days=30)) == 0


def test_the_archivers_queries_use_their_indexes(store, views, history, database_url):
    archive.archive(store.database("t"), timedelta(days=30), NOW, batch=50)
    job = rows(database_url, "SELECT job_id FROM job_heads WHERE archived_at IS NOT NULL LIMIT 1")[
        0
    ]["job_id"]
    with psycopg.connect(database_url) as conn:
        conn.execute("SET enable_seqscan = off")

        def plan(query: str, params) -> str:
            return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))

        assert "job_heads_archivable" in plan(archive.CANDIDATES, (NOW, 500))
        where = plan(
            "SELECT a.format, a.data FROM job_heads h JOIN job_archive a "
            "ON a.month = h.archive_month AND a.chunk = h.archive_chunk WHERE h.job_id = %s",
            (job,),
        )
        assert "job_heads_pkey" in where
        assert "_pkey" in where.split("job_archive_")[1]


@pytest.mark.slow
def test_a_crash_mid_archive_loses_and_doubles_nothing(store, views, database_url):
    build(store, 3000, NOW - timedelta(days=60), NOW - timedelta(days=31), repos=200)
    catch_up(store, views)
    before = rows(
        database_url,
        "SELECT count(*) AS n FROM jobs_events WHERE topic LIKE 'jobstore.domain:Job.%%'",
    )[0]["n"]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        str(ROOT / "bin" / "jobs"),
        "archive",
        "--older-than",
        "30d",
        "--batch",
        "20",
        "--now",
        NOW.isoformat(),
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if rows(database_url, "SELECT count(*) AS n FROM job_archive")[0]["n"] >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)

    def check() -> int:
        live = rows(
            database_url,
            "SELECT originator_id AS id, count(*) AS n FROM jobs_events "
            "WHERE topic LIKE 'jobstore.domain:Job.%%' GROUP BY 1",
        )
        live_ids = {r["id"] for r in live}
        archived = rows(database_url, "SELECT job_id FROM job_heads WHERE archived_at IS NOT NULL")
        archived_ids = {r["job_id"] for r in archived}
        assert not live_ids & archived_ids  # nothing doubled
        assert len(live_ids | archived_ids) == 3000  # nothing lost
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            in_chunks = sum(
                len([e for _, e in chunk if e.topic.startswith("jobstore.domain:Job.")])
                for chunk in archive.chunks(conn)
            )
        assert in_chunks + sum(r["n"] for r in live) == before
        return len(archived_ids)

    partly = check()
    assert 0 < partly < 3000  # killed midway
    archive.archive(store.database("t"), timedelta(days=30), NOW)
    assert check() == 3000


def test_archiving_while_workers_run_and_the_views_follow(store, views, history, database_url):
    """Jobs enqueued, claimed and completed while the archiver takes batches of 20: no
    write refused, and the views follow the log past the gaps it leaves."""
    import threading

    done: list = []
    failed: list = []

    def work() -> None:
        try:
            for i in range(60):
                spec = JobSpec.create("pr-reviews", f"acme/now{i}", days=1)
                job_id = store.enqueue(spec, NOW, route=Route("local", "explicit", "t")).job_id
                store.claim(job_id, "w", NOW)
                store.complete(job_id, 1, now=NOW)
                done.append(job_id)
        except Exception as exc:  # any refusal fails the test below
            failed.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    report = archive.archive(store.database("t"), timedelta(days=30), NOW, batch=20)
    worker.join()
    assert not failed
    assert report.jobs > 100
    assert len(done) == 60
    catch_up(store, views)
    assert reads.projection_lag(store.database("t")) == 0
    row = rows(
        database_url,
        "SELECT count(*) AS n FROM capture_jobs WHERE status = 'completed' "
        "AND repository LIKE 'acme/now%%'",
    )
    assert row[0]["n"] == 60
