"""`bin/bench store`: job store throughput next to procrastinate on the same PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
from psycopg import conninfo, sql

from jobstore import config, db
from jobstore.routing import LOCAL, decide
from jobstore.spec import JobSpec

BATCH = 100


@contextmanager
def scratch_database(server_url: str, label: str) -> Iterator[str]:
    """A new empty database on the same server, dropped afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(server_url, dbname=name)
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
    store = db.open_store(config.Settings(pool_size=2), url=url)
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


def run_ours(url: str, n: int, workers: int, batch: int) -> dict[str, float]:
    store = db.open_store(config.Settings(pool_size=2), url=url)
    now = datetime.now(UTC)

    def route(spec: JobSpec, at: datetime) -> tuple[str, str, str]:
        return decide(spec, at, capable=[LOCAL]).as_decision()

    start = time.perf_counter()
    for first in range(0, n, BATCH):
        specs = [
            JobSpec.create("bench-noop", f"bench/repo{i}", days=1, trigger="scheduled")
            for i in range(first, min(first + BATCH, n))
        ]
        store.enqueue_many(specs, now, decide=route)
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
    app = procrastinate_app(url)
    with app.open():
        app.schema_manager.apply_schema()
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            app.tasks["noop"].batch_defer(*[{} for _ in range(min(BATCH, n - first))])
        enqueue_s = time.perf_counter() - start
    process_s, _ = parallel(procrastinate_worker, [(url,)] * workers)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        finished = row.fetchone()
    assert finished == (n,), finished
    return {"enqueue_s": enqueue_s, "process_s": process_s, "total_s": enqueue_s + process_s}


def checkpoint_cost(url: str, checkpoints: int) -> dict[str, float]:
    """Milliseconds per progress checkpoint on one running job, and per batched save."""
    store = db.open_store(config.Settings(pool_size=2), url=url)
    spec = JobSpec.create("bench-progress", "bench/progress", days=1)
    job_id = store.enqueue(spec, decide=lambda s, t: (LOCAL, "explicit", "bench")).job_id
    store.claim(job_id, "w")
    start = time.perf_counter()
    for i in range(checkpoints):
        store.progress(job_id, i, total=checkpoints, cursor=f"c{i}", api_points=1)
    per_checkpoint = (time.perf_counter() - start) / checkpoints * 1000
    store.close()
    return {"checkpoint_ms": per_checkpoint}


@click.group()
def bench() -> None:
    """Benchmarks: each prints a table and, with --json, a JSON line last."""


@bench.command()
@click.option("--jobs", "n", default=2000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--batch", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--checkpoints", default=500, show_default=True, type=click.IntRange(10, 10_000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def store(n: int, batch: int, checkpoints: int, as_json: bool) -> None:
    """Jobs/s through enqueue (with routing), claim and complete, against procrastinate."""
    server = db.database_url(config.load())
    rows = []
    result: dict[str, Any] = {"jobs": n, "claim_batch": batch}
    for workers in (1, 4):
        with scratch_database(server, "ours") as url:
            db.migrate(url)
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
        db.migrate(url)
        result.update({k: round(v, 3) for k, v in checkpoint_cost(url, checkpoints).items()})
    click.echo(f"{'workers':>7}  {'ours jobs/s':>11}  {'procrastinate':>13}  {'ratio':>5}  "
               "ours: enqueue / claim / complete (s, summed over workers)")  # fmt: skip
    for workers, ours, theirs, ratio in rows:
        click.echo(
            f"{workers:>7}  {n / ours['total_s']:>11.0f}  {n / theirs['total_s']:>13.0f}  "
            f"{ratio:>5.2f}  {ours['enqueue_s']:.2f} / {ours['claim_s']:.2f} / "
            f"{ours['complete_s']:.2f}"
        )
    click.echo(f"one progress checkpoint: {result['checkpoint_ms']:.2f} ms")
    if as_json:
        click.echo(json.dumps(result))
