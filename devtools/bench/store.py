"""`bin/bench store`: job store throughput next to procrastinate on the same PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import psycopg
from eventsourcing.persistence import Tracking
from psycopg import sql

import jobstore
from jobstore import db
from jobstore.routing import LOCAL, Route, decide
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec

BATCH = 100
BENCH_ROUTE = Route(LOCAL, "explicit", "bench")


@contextmanager
def scratch_database(server_url: str, label: str) -> Iterator[str]:
    """A new empty database on the same server, dropped afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def parallel(target: Callable[..., Any], args: list[tuple]) -> tuple[float, list[Any]]:
    """Runs `target` in one process per args; returns the time from the moment every process
    was ready (the barrier) until the last one finished, so start-up is not measured."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(len(args)) as pool:
        barrier = manager.Barrier(len(args) + 1)
        pending = pool.starmap_async(target, [(*a, barrier) for a in args])
        barrier.wait()
        start = time.monotonic()
        results = pending.get()
    return max(r["finished"] for r in results) - start, results


def our_worker(url: str, worker: str, batch: int, barrier: Any) -> dict[str, float]:
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    barrier.wait()
    claim = complete = 0.0
    jobs = misses = 0
    while misses < 3:  # others may still be committing the last batches
        t0 = time.perf_counter()
        claimed = store.claim_next(LOCAL, worker, limit=batch)
        t1 = time.perf_counter()
        if claimed:
            store.complete_many(claimed, items=1)
        claim, complete = claim + t1 - t0, complete + time.perf_counter() - t1
        jobs += len(claimed)
        misses = 0 if claimed else misses + 1
    finished = time.monotonic()
    store.close()
    return {"jobs": jobs, "claim_s": claim, "complete_s": complete, "finished": finished}


def our_worker_path(url: str, worker: str, barrier: Any) -> dict[str, float]:
    """As `bin/run-job --lane local --watch` works: before each claim the lane-stop check,
    then one claim, the job, one completion; until nothing is left."""
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    barrier.wait()
    jobs = misses = 0
    while misses < 3:  # others may still be committing their last jobs
        store.rollout().stopped.get(LOCAL)  # what the worker asks before each claim
        claimed = store.claim_next(LOCAL, worker)
        for job in claimed:
            store.complete(job.id, 1, attempt=job.attempt, held=job)
        jobs += len(claimed)
        misses = 0 if claimed else misses + 1
    finished = time.monotonic()
    store.close()
    return {"jobs": jobs, "finished": finished}


def enqueue_noop(url: str, n: int) -> float:
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    now = datetime.now(UTC)

    def route(spec: JobSpec) -> Route:
        return decide(spec, now, capable=[LOCAL])

    start = time.perf_counter()
    for first in range(0, n, BATCH):
        specs = [
            JobSpec.create("bench-noop", f"bench/repo{i}", days=1, trigger="scheduled")
            for i in range(first, min(first + BATCH, n))
        ]
        store.enqueue_many(specs, now, route)
    store.close()
    return time.perf_counter() - start


def run_worker_path(url: str, n: int, workers: int) -> float:
    """Seconds for `workers` worker processes to work `n` queued jobs one at a time."""
    enqueue_noop(url, n)
    process_s, results = parallel(our_worker_path, [(url, f"w{i}") for i in range(workers)])
    assert sum(r["jobs"] for r in results) == n, results
    return process_s


def run_ours(url: str, n: int, workers: int, batch: int) -> dict[str, float]:
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    now = datetime.now(UTC)

    def route(spec: JobSpec) -> Route:
        return decide(spec, now, capable=[LOCAL])

    start = time.perf_counter()
    for first in range(0, n, BATCH):
        specs = [
            JobSpec.create("bench-noop", f"bench/repo{i}", days=1, trigger="scheduled")
            for i in range(first, min(first + BATCH, n))
        ]
        store.enqueue_many(specs, now, route)
    enqueue_s = time.perf_counter() - start
    process_s, results = parallel(our_worker, [(url, f"w{i}", batch) for i in range(workers)])
    assert sum(r["jobs"] for r in results) == n, results
    assert store.heads.count("completed") == n
    store.close()
    return {
        "enqueue_s": enqueue_s,
        "process_s": process_s,
        "total_s": enqueue_s + process_s,
        "claim_s": sum(r["claim_s"] for r in results),
        "complete_s": sum(r["complete_s"] for r in results),
    }


def procrastinate_app(url: str, *, worker: bool = False) -> Any:
    import procrastinate

    connector_class = (
        procrastinate.PsycopgConnector if worker else procrastinate.SyncPsycopgConnector
    )
    app = procrastinate.App(connector=connector_class(conninfo=url))

    @app.task(name="noop")
    def noop() -> None:
        return None

    return app


def procrastinate_worker(url: str, barrier: Any) -> dict[str, float]:
    app = procrastinate_app(url, worker=True)
    barrier.wait()
    app.run_worker(wait=False, concurrency=1, install_signal_handlers=False)
    return {"finished": time.monotonic()}


def run_procrastinate(url: str, n: int, workers: int) -> dict[str, float]:
    """Their enqueue (batch_defer) and their worker (one job at a time, a no-op task)."""
    app = procrastinate_app(url)
    with app.open():
        app.schema_manager.apply_schema()
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            app.tasks["noop"].batch_defer(*[{} for _ in range(min(BATCH, n - first))])
        enqueue_s = time.perf_counter() - start
    parallel(procrastinate_worker, [(url,)] * workers)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        finished = row.fetchone()
        # From their first job started to their last finished: their worker's start-up
        # (an event loop, a connection pool) is not counted against them.
        span = conn.execute(
            "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') "
            "- min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events"
        ).fetchone()
    assert finished == (n,), finished
    process_s = float(span[0])
    return {"enqueue_s": enqueue_s, "process_s": process_s, "total_s": enqueue_s + process_s}


def checkpoint_cost(url: str, checkpoints: int) -> dict[str, float]:
    """Milliseconds per progress checkpoint on one running job, and per batched save."""
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    spec = JobSpec.create("bench-progress", "bench/progress", days=1)
    job_id = store.enqueue(spec, route=BENCH_ROUTE).job_id
    store.claim(job_id, "w")
    start = time.perf_counter()
    for i in range(checkpoints):
        store.progress(job_id, i, total=checkpoints, cursor=f"c{i}", api_points=1)
    per_checkpoint = (time.perf_counter() - start) / checkpoints * 1000
    store.close()
    return {"checkpoint_ms": per_checkpoint}


@click.command()
@click.option("--jobs", "n", default=2000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--batch", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--checkpoints", default=500, show_default=True, type=click.IntRange(10, 10_000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def store(n: int, batch: int, checkpoints: int, as_json: bool) -> None:
    """Jobs/s of a worker's path (one claim, one completion at a time) and of batches of
    `--batch`, against procrastinate's worker on the same PostgreSQL; about a minute."""
    server = db.database_url(load())
    rows = []
    paths = []
    result: dict[str, Any] = {"jobs": n, "claim_batch": batch}
    for workers in (1, 4):
        with scratch_database(server, "theirs") as url:
            theirs = run_procrastinate(url, n, workers)
        with scratch_database(server, "ours") as url:
            jobstore.migrate(url)
            path_s = run_worker_path(url, n, workers)
        ratio = theirs["process_s"] / path_s
        paths.append((workers, n / path_s, n / theirs["process_s"], ratio))
        result[f"worker_path_{workers}w_jobs_per_s"] = round(n / path_s, 1)
        result[f"procrastinate_worker_{workers}w_jobs_per_s"] = round(n / theirs["process_s"], 1)
        result[f"worker_path_ratio_{workers}w"] = round(ratio, 2)
    for workers in (1, 4):
        with scratch_database(server, "ours") as url:
            jobstore.migrate(url)
            ours = run_ours(url, n, workers, batch)
        with scratch_database(server, "procrastinate") as url:
            theirs = run_procrastinate(url, n, workers)
        ratio = theirs["total_s"] / ours["total_s"]
        rows.append((workers, ours, theirs, ratio))
        result[f"ours_{workers}w_jobs_per_s"] = round(n / ours["total_s"], 1)
        result[f"procrastinate_{workers}w_jobs_per_s"] = round(n / theirs["total_s"], 1)
        result[f"ratio_{workers}w"] = round(ratio, 2)
        result[f"ours_{workers}w_phases_s"] = {k: round(v, 3) for k, v in ours.items()}
    with scratch_database(server, "checkpoint") as url:
        jobstore.migrate(url)
        result.update({k: round(v, 3) for k, v in checkpoint_cost(url, checkpoints).items()})
    click.echo("the worker's path: one claim, one completion at a time (procrastinate's worker)")
    click.echo(f"{'workers':>7}  {'ours jobs/s':>11}  {'procrastinate':>13}  {'ratio':>5}")
    for workers, ours_rate, their_rate, ratio in paths:
        click.echo(f"{workers:>7}  {ours_rate:>11.0f}  {their_rate:>13.0f}  {ratio:>5.2f}")
    click.echo(f"\nbatches of {batch} (enqueue, claim and complete; procrastinate as above)")
    click.echo(
        f"{'workers':>7}  {'ours jobs/s':>11}  {'procrastinate':>13}  {'ratio':>5}  "
        "ours: enqueue / claim / complete (s, summed over workers)"
    )
    for workers, ours, theirs, ratio in rows:
        click.echo(
            f"{workers:>7}  {n / ours['total_s']:>11.0f}  {n / theirs['total_s']:>13.0f}  "
            f"{ratio:>5.2f}  {ours['enqueue_s']:.2f} / {ours['claim_s']:.2f} / "
            f"{ours['complete_s']:.2f}"
        )
    click.echo(f"one progress checkpoint: {result['checkpoint_ms']:.2f} ms")
    if as_json:
        click.echo(json.dumps(result))


def fill_log(store: Any, events: int) -> int:
    """Jobs with a realistic life (queued, routed, started, 5 checkpoints, completed)."""
    per_job, made, n = 9, 0, 0
    while made < events:
        specs = [JobSpec.create("bench-views", f"bench/v{n}-{i}", days=1) for i in range(200)]
        store.enqueue_many(specs, route=BENCH_ROUTE)
        claimed = store.claim_next(LOCAL, "w", limit=200)
        for job in claimed:
            for page in range(5):
                job.progress(datetime.now(UTC), page * 10, 50, f"c{page}", 1)
        store.save_jobs(*claimed)
        store.complete_many(claimed, items=50)
        made += per_job * len(claimed)
        n += 1
    return made


def measure_lag(store: Any, url: str, samples: int) -> list[float]:
    """Milliseconds from a save returning to its job appearing in capture_jobs."""
    lags = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(samples):
            spec = JobSpec.create("bench-lag", f"bench/lag{i}", days=1)
            start = time.monotonic()
            job_id = store.enqueue(spec).job_id
            while not conn.execute(
                "SELECT 1 FROM capture_jobs WHERE job_id = %s", (job_id,)
            ).fetchone():
                time.sleep(0.0005)
            lags.append((time.monotonic() - start) * 1000)
    return lags


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@click.command()
@click.option("--events", default=100_000, show_default=True, type=click.IntRange(1000, 10**7))
@click.option("--samples", default=200, show_default=True, type=click.IntRange(10, 10_000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def projections(events: int, samples: int, as_json: bool) -> None:
    """Rebuild speed over a big log (against event-by-event projection) and save-to-view lag."""
    from jobstore import views  # imported here: the store benchmark does not need it

    server = db.database_url(load())
    with scratch_database(server, "views") as url:
        jobstore.migrate(url)
        store = jobstore.open_store(Settings(pool_size=2), url=url)
        made = fill_log(store, events)
        job_views = views.open_views(db.eventsourcing_env(url))
        start = time.perf_counter()
        rebuilt = job_views.rebuild(store)
        rebuild_s = time.perf_counter() - start
        # The peer: the same views updated one event per transaction, as a plain
        # ProjectionRunner does, over the first 5,000 events.
        peer_events = store.recorder.select_notifications(0, 5000, topics=views.TOPICS)
        job_views.reset()
        start = time.perf_counter()
        for note in peer_events:
            job_views.apply_one(store.mapper.to_domain_event(note), Tracking(store.name, note.id))
        peer_s = time.perf_counter() - start
        job_views.rebuild(store)
        bin_jobs = Path(__file__).resolve().parents[2] / "bin" / "jobs"
        projector = subprocess.Popen(
            [sys.executable, str(bin_jobs), "project", "--forever"],
            env={**os.environ, "DATABASE_URL": url},
            stdout=subprocess.DEVNULL,
        )
        try:
            measure_lag(store, url, 5)  # warm up: the projector has started and listens
            lags = measure_lag(store, url, samples)
        finally:
            projector.terminate()
            projector.wait(timeout=30)
        job_views.close()
        store.close()
    result = {
        "events": rebuilt,
        "generated_events": made,
        "rebuild_s": round(rebuild_s, 3),
        "rebuild_events_per_s": round(rebuilt / rebuild_s),
        "event_by_event_per_s": round(len(peer_events) / peer_s),
        "ratio": round((rebuilt / rebuild_s) / (len(peer_events) / peer_s), 2),
        "lag_p50_ms": round(percentile(lags, 0.5), 2),
        "lag_p95_ms": round(percentile(lags, 0.95), 2),
        "lag_samples": samples,
    }
    click.echo(f"{'measure':32} value")
    click.echo(f"{'events in the log':32} {rebuilt:,}")
    click.echo(f"{'rebuild, events/s (batched)':32} {result['rebuild_events_per_s']:,}")
    click.echo(f"{'event by event, events/s':32} {result['event_by_event_per_s']:,}")
    click.echo(f"{'ratio batched / event by event':32} {result['ratio']}")
    click.echo(
        f"{'save-to-view lag p50 / p95 (ms)':32} {result['lag_p50_ms']} / {result['lag_p95_ms']}"
    )
    if as_json:
        click.echo(json.dumps(result))
