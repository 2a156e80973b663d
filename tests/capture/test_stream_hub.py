"""The hub behind every event stream of a server: one thread and one connection feed all
open streams; a job whose events cannot be read ends its own stream (saying why) and no
other; a database that stops taking connections leaves the streams open, and they go on
where they were when it is back."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from capture.api import stream as streams
from capture.api.stream import Hub
from jobstore.db import Database
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.capture.cli.test_poison import poisoned
from tests.conftest import with_dbname
from tests.jobstore.test_views import wait_for


def names(stream: streams.Stream, got: list[str]) -> list[str]:
    """The event names of the frames handed to `stream` so far (kept in `got`)."""
    frames, _ = stream.take()
    got.extend(line.removeprefix("event: ") for f in frames for line in f.splitlines())
    return [g for g in got if g and not g.startswith(("id:", "data:"))]


def opened(hub: Hub, job_id, after: int = 0) -> streams.Stream:
    ticket = hub.open(job_id, after)
    assert ticket is not None
    claimed = streams.claim(ticket)
    assert claimed is not None
    assert claimed[0] is hub
    return claimed[1]


def enqueue(store, repository: str):
    spec = JobSpec.create("pr-reviews", repository, days=1)
    return store.enqueue(spec, route=Route("local", "explicit", "test")).job_id


def test_an_unreadable_job_ends_its_own_stream_and_no_other(store, database_url):
    good = enqueue(store, "acme/widgets")
    bad = poisoned(store, database_url, "local")
    hub = Hub(store, Database(database_url, "streams", size=1))
    try:
        good_stream, bad_stream = opened(hub, good), opened(hub, bad)
        seen_good: list[str] = []
        seen_bad: list[str] = []
        wait_for(lambda: bad_stream.ended)
        assert names(bad_stream, seen_bad) == ["end"]
        assert any("unreadable" in line for line in seen_bad)
        wait_for(lambda: names(good_stream, seen_good) == ["Queued", "Routed"])
        assert store.claim(good, "w1").won
        store.complete(good, 0)
        wait_for(lambda: names(good_stream, seen_good)[-1:] == ["end"])
        assert names(good_stream, seen_good) == ["Queued", "Routed", "Started", "Completed", "end"]
        assert hub.open_streams == 0  # both ended streams gave their slots back
    finally:
        hub.stop()


def test_streams_wait_out_a_database_that_refuses_connections(store, database_url, caplog):
    job_id = enqueue(store, "acme/widgets")
    hub = Hub(store, Database(database_url, "streams", size=1, timeout=0.5))
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    admin = psycopg.connect(with_dbname(database_url, "postgres"), autocommit=True)
    seen: list[str] = []
    try:
        stream = opened(hub, job_id)
        wait_for(lambda: names(stream, seen) == ["Queued", "Routed"])
        with caplog.at_level(logging.WARNING, logger="capture.api.stream"):
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
            admin.execute(  # the hub's connection is cut and it may not open another
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE %s",
                (name, "%streams"),
            )
            assert store.claim(job_id, "w1").won  # the store's open connections still write
            wait_for(lambda: any("wait for the database" in r.message for r in caplog.records))
            assert not stream.ended
            assert hub.open_streams == 1
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
            )
            wait_for(lambda: names(stream, seen)[-1:] == ["Started"])
        waits = [r for r in caplog.records if "wait for the database" in r.message]
        assert len(waits) == 1  # said once for the whole outage
        assert any("go on" in r.message for r in caplog.records)
        assert names(stream, seen) == ["Queued", "Routed", "Started"]
    finally:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )
        admin.close()
        hub.stop()


def test_watching_reads_heads_and_events_by_index_with_a_years_rows(store, database_url):
    """Both statements of a hub's check, with 50,000 jobs and 200,000 events stored."""
    from jobstore.watch import AFTER, HEADS

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # raw rows, no guards
        conn.execute(
            "INSERT INTO job_heads (job_id, job_type, repository, status, priority, attempt, "
            "version, dedupe_key, created_at, last_event_at) SELECT gen_random_uuid(), "
            "'pr-reviews', 'acme/r' || g, 'completed', 'normal', 1, 4, 'k' || g, now(), now() "
            "FROM generate_series(1, 50000) g"
        )
        conn.execute(
            "INSERT INTO jobs_events (originator_id, originator_version, topic, state) "
            "SELECT h.job_id, v, 't', '\\x00' FROM job_heads h, generate_series(1, 4) v"
        )
        conn.execute("ANALYZE job_heads")
        conn.execute("ANALYZE jobs_events")
        ids = [r[0] for r in conn.execute("SELECT job_id FROM job_heads LIMIT 20")]
        heads = sql.SQL(HEADS)
        events = sql.SQL(AFTER).format(events=sql.Identifier("jobs_events"))
        for query, params in ((heads, (ids,)), (events, (ids, [1] * len(ids)))):
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params))
            assert "Seq Scan on job_heads" not in plan, plan
            assert "Seq Scan on jobs_events" not in plan, plan
