"""`bin/bench history`: a year on one PostgreSQL. A store with a long history of finished
jobs and a fleet's worth of live ones, built through the store's own code paths (the
domain's commands, `save_jobs` and the recorder, batched), projected by the views; then
the reads a fleet makes all day (the /metrics scrape, the dashboard's data, lane_stats, an
archived job's history) are timed before and after archiving what finished more than 30
simulated days ago, at two history sizes in one run, so the ratio says how the reads grow.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import click
import psycopg

import jobstore
from capture.api.app import create_app
from capture.api.context import Context
from capture.freshness.settings import load_freshness
from capture.settings import ApiSettings
from devtools.bench.store import scratch_database
from jobstore import JobSpec, JobStore, Secret, archive, catch_up, db, open_views
from jobstore.domain import DedupeSlot, Job
from jobstore.settings import Settings, load

END = datetime(2026, 12, 1, tzinfo=UTC)
LANES = (("inngest", 0.35), ("github_actions", 0.45), ("local", 0.20))
TYPES = ("pr-refresh", "pr-reviews", "pr-details", "pr-backfill")
TOKEN = "bench-history-token"


def _lane(rng: random.Random) -> str:
    x = rng.random()
    for lane, share in LANES:
        if x < share:
            return lane
        x -= share
    return "local"


def _job(rng: random.Random, created: datetime, repo: str, job_type: str) -> Job:
    """One job's life, as the lanes live it: routed, dispatched, started, a checkpoint or
    two, and completed (most), failed for good or cancelled."""
    spec = JobSpec.create(
        job_type, repo, days=1, trigger="scheduled", dedupe_key=f"{job_type}:{repo}"
    )
    job = Job.enqueue(uuid4(), spec, created)
    lane = _lane(rng)
    job.route(lane, "recent" if lane == "inngest" else "bulk", "bench", created)
    t = created
    if rng.random() < 0.01:
        job.cancel("superseded", t + timedelta(seconds=5))
        return job
    if lane != "local":
        t += timedelta(seconds=rng.uniform(0.2, 2))
        job.dispatch(f"{rng.randrange(10**9)} https://example.invalid/runs/1", t)
    t += timedelta(seconds=rng.expovariate(1 / (30 if lane == "inngest" else 120)))
    job.start(f"w{rng.randrange(64)}", t, lane)
    items = rng.randrange(1, 200)
    for step in range(rng.choice((1, 1, 2))):
        t += timedelta(seconds=rng.uniform(1, 60))
        job.progress(t, (step + 1) * items // 2, items, f"cursor-{step}", rng.randrange(1, 20))
    t += timedelta(seconds=rng.uniform(1, 300))
    if rng.random() < 0.03:
        job.fail("github", "HTTP 502 from /graphql", t, jobstore.RetryPolicy(), retryable=False)
    else:
        job.complete(t, items, rng.randrange(1, 10))
    return job


def build(
    store: JobStore,
    count: int,
    start: datetime,
    end: datetime,
    repos: int = 10_000,
    batch: int = 1000,
    seed: int = 7,
    live: bool = False,
    slots: dict[str, tuple[Any, int]] | None = None,
) -> dict[str, tuple[Any, int]]:
    """`count` jobs created evenly from `start` to `end` over `repos` repositories, saved
    `batch` to a transaction with their dedupe slots; `live` ones stop at routed or
    running. Returns the slots' latest (id, version) per key, for the next call."""
    rng = random.Random(seed)
    slots = {} if slots is None else slots
    span = (end - start) / max(count, 1)
    for first in range(0, count, batch):
        pending: list[Any] = []
        for i in range(first, min(first + batch, count)):
            repo = f"fleet{rng.randrange(repos)}/repo"
            job_type = rng.choice(TYPES)
            created = start + span * i
            if live:
                spec = JobSpec.create(job_type, repo, days=1, dedupe_key=f"live:{i}")
                job = Job.enqueue(uuid4(), spec, created)
                job.route(_lane(rng), "bulk", "bench", created)
                if rng.random() < 0.3:
                    job.start("w1", created + timedelta(seconds=5))
            else:
                job = _job(rng, created, repo, job_type)
            key = job.dedupe_key
            if key in slots:
                slot_id, version = slots[key]
                pending.append(
                    DedupeSlot.Taken(
                        originator_id=slot_id,
                        originator_version=version + 1,
                        timestamp=created,
                        job_id=job.id,
                    )
                )
                slots[key] = (slot_id, version + 1)
            else:
                slot = DedupeSlot.open(key, job.id, created)
                pending.append(slot)
                slots[key] = (slot.id, 1)
            pending.append(job)
        store.save_jobs(*pending)
    return slots


def p95_ms(call: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.quantiles(times, n=20)[18] if n >= 2 else times[0], 1)


def reads(client: Any, store: JobStore, job_ids: list[Any], n: int) -> dict[str, float]:
    """The fleet's everyday reads, p95 over `n` tries each."""
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str) -> None:
        answer = client.get(path, headers=auth)
        assert answer.status_code == 200, (path, answer.status_code, answer.get_data()[:200])

    reads_db = store.database("bench")
    ids = iter(job_ids * (n // max(len(job_ids), 1) + 1))
    return {
        "metrics_p95_ms": p95_ms(lambda: get("/metrics"), n),
        "dashboard_p95_ms": p95_ms(lambda: get("/v1/dashboard?hours=6"), n),
        "lane_stats_ms": p95_ms(lambda: reads_db.rows("SELECT * FROM lane_stats"), n),
        "show_job_ms": p95_ms(lambda: get(f"/v1/jobs/{next(ids)}"), n),
    }


def sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('jobs_events') AS events, "
            "(SELECT count(*) FROM jobs_events) AS event_rows, "
            "COALESCE((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i "
            " JOIN pg_class c ON c.oid = i.inhrelid "
            " WHERE i.inhparent = 'job_archive'::regclass), 0) AS archive, "
            "pg_total_relation_size('job_heads') + pg_total_relation_size('capture_jobs') "
            "AS summaries, pg_total_relation_size('job_rollups') AS rollups"
        ).fetchone()
    return {
        "events": int(row[0]),
        "event_rows": int(row[1]),
        "archive": int(row[2]),
        "summaries": int(row[3]),
        "rollups": int(row[4]),
    }


def some_ids(url: str, archived: bool, n: int = 50) -> list[Any]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT job_id FROM job_heads WHERE (archived_at IS NOT NULL) = %s "
            "ORDER BY random() LIMIT %s",
            (archived, n),
        ).fetchall()
    return [r[0] for r in rows]


def run(url: str, jobs: int, live: int, days: float, n: int, say: Callable) -> dict[str, Any]:
    """One history size, built, read, archived and read again."""
    jobstore.migrate(url)
    settings = Settings(pool_size=4, archive_after_days=0)
    store = jobstore.open_store(settings, url=url)
    views = open_views(store)
    out: dict[str, Any] = {"jobs": jobs, "live": live}
    try:
        start = END - timedelta(days=days)
        t = time.monotonic()
        slots = build(store, jobs, start, END - timedelta(hours=1))
        build(store, live, END - timedelta(hours=1), END, live=True, slots=slots)
        out["build_s"] = round(time.monotonic() - t, 1)
        say(f"{jobs} jobs built in {out['build_s']} s")
        t = time.monotonic()
        catch_up(store, views)
        out["project_s"] = round(time.monotonic() - t, 1)
        say(f"projected in {out['project_s']} s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        ctx = Context(store, load_freshness({}), now=lambda: END)
        app = create_app(ctx, ApiSettings(tokens=(Secret(TOKEN),)))
        client = app.test_client()
        before = sizes(url)
        out["live_events_bytes_before"] = before["events"]
        out["before"] = reads(client, store, some_ids(url, False), n)
        t = time.monotonic()
        report = archive.archive(
            store.database("archive"), timedelta(days=30), END, batch=archive.BATCH
        )
        seconds = time.monotonic() - t
        out["archive_jobs_per_s"] = round(report.jobs / seconds, 1) if seconds else None
        out["archived_jobs"] = report.jobs
        out["compression_ratio"] = round(report.raw_bytes / max(report.stored_bytes, 1), 1)
        say(f"archived {report.jobs} jobs in {seconds:.1f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            # what the table settles at: plain VACUUM (autovacuum) lets the freed pages be
            # reused, FULL gives them back, so the bytes say what the live log now needs
            conn.execute("VACUUM FULL jobs_events")
            conn.execute("VACUUM ANALYZE")
        after = sizes(url)
        out["live_events_bytes_after"] = after["events"]
        out["live_event_rows"] = [before["event_rows"], after["event_rows"]]
        out["bytes_per_archived_job"] = round(after["archive"] / max(report.jobs, 1), 1)
        out["summary_bytes_per_job"] = round(after["summaries"] / max(jobs + live, 1), 1)
        out["rollup_bytes"] = after["rollups"]
        out["after"] = reads(client, store, some_ids(url, False), n)
        out["show_archived_ms"] = reads(client, store, some_ids(url, True), n)["show_job_ms"]
        ctx.close()
    finally:
        views.close()
        store.close()
    return out


def _scaled(n: int) -> Iterator[int]:
    yield max(n // 10, 1000)
    yield n


@click.command()
@click.option("--jobs", default=1_000_000, show_default=True, type=click.IntRange(1000))
@click.option("--live", default=10_000, show_default=True, type=click.IntRange(0))
@click.option("--days", default=70.0, show_default=True, type=click.FloatRange(31))
@click.option("--reads", "n", default=20, show_default=True, type=click.IntRange(2, 1000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def history(jobs: int, live: int, days: float, n: int, as_json: bool) -> None:
    """A long history (default 1,000,000 finished jobs over 70 days, and 10,000 live),
    and a tenth of it as the peer in the same run: /metrics, the dashboard's data,
    lane_stats and a job's history timed before and after archiving what finished more
    than 30 days ago; archive speed and bytes per archived job."""
    server = db.database_url(load())
    results = []
    for size in _scaled(jobs):
        with scratch_database(server, f"history-{size}") as url:
            results.append(run(url, size, live, days, n, lambda m: click.echo(m, err=True)))
    small, big = results
    growth = {
        key: round(big["after"][key] / max(small["after"][key], 0.1), 2)
        for key in ("metrics_p95_ms", "dashboard_p95_ms", "lane_stats_ms")
    }
    # Reads do not depend on the history (ratio ~1 over a tenfold one), so the timings at
    # 10x are those measured, times the growth seen once more.
    tenfold = {f"{k}_x10": round(big["after"][k] * growth[k], 1) for k in growth}
    doc = {
        "jobs": big["jobs"],
        "live": live,
        "build_s": big["build_s"],
        "project_s": big["project_s"],
        **big["after"],
        "show_archived_ms": big["show_archived_ms"],
        "archive_jobs_per_s": big["archive_jobs_per_s"],
        "live_events_bytes": [big["live_events_bytes_before"], big["live_events_bytes_after"]],
        "bytes_per_archived_job": big["bytes_per_archived_job"],
        "compression_ratio": big["compression_ratio"],
        "summary_bytes_per_job": big["summary_bytes_per_job"],
        "before_archiving": big["before"],
        "growth_over_10x_history": growth,
        "extrapolated_10x_history": tenfold,
        "peer": small,
    }
    rows = [
        ("jobs (finished + live)", lambda r: f"{r['jobs']} + {r['live']}"),
        ("build s / project s", lambda r: f"{r['build_s']} / {r['project_s']}"),
        ("metrics p95 ms (before / after)", lambda r: _pair(r, "metrics_p95_ms")),
        ("dashboard p95 ms", lambda r: _pair(r, "dashboard_p95_ms")),
        ("lane_stats ms", lambda r: _pair(r, "lane_stats_ms")),
        ("show live job ms", lambda r: _pair(r, "show_job_ms")),
        ("show archived job ms", lambda r: r["show_archived_ms"]),
        ("archive jobs / s", lambda r: r["archive_jobs_per_s"]),
        (
            "live event bytes (before / after)",
            lambda r: f"{r['live_events_bytes_before']} / {r['live_events_bytes_after']}",
        ),
        ("bytes per archived job", lambda r: r["bytes_per_archived_job"]),
        ("compression", lambda r: f"{r['compression_ratio']}x"),
    ]
    width = max(len(name) for name, _ in rows)
    click.echo(f"{'':<{width}}  {'peer (1/10)':>22}  {'history':>22}")
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value(small)!s:>22}  {value(big)!s:>22}")
    click.echo(f"growth of reads over 10x the history: {growth}")
    if as_json:
        click.echo(json.dumps(doc, default=str))


def _pair(r: dict[str, Any], key: str) -> str:
    return f"{r['before'][key]} / {r['after'][key]}"
