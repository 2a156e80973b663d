"""`bin/bench latency`: enqueue-to-started for a waiting local worker (LISTEN/NOTIFY), next
to procrastinate's defer-to-start on the same PostgreSQL in the same run.

Each side has one worker process already waiting; the producer enqueues one job at a
time with a pause between, so every job finds the worker idle. A start is the moment the
worker holds the job (our Started event is committed; procrastinate's task body runs).
Times are CLOCK_MONOTONIC, which Linux shares between processes.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime
from typing import Any

import click

from capture.runner import Result
from capture.worker import Wakeup, work
from jobstore import config, db
from jobstore.bench import bench, percentile, procrastinate_app, scratch_database
from jobstore.domain import Job
from jobstore.spec import JobSpec

LOCAL = ("local", "explicit", "bench")


def our_worker(url: str, n: int, ready: Any, started: Any) -> None:
    store = db.open_store(config.Settings(pool_size=2), url=url)

    def run(job: Job) -> Result:
        started[str(job.id)] = time.monotonic()
        store.complete(job.id, 0, attempt=job.attempt)
        return Result(job.id, "completed")

    wakeup = Wakeup(url, "local")
    wakeup.listen()
    ready.set()
    work(store, "local", "latency", run, now=lambda: datetime.now(UTC), wakeup=wakeup,
         max_jobs=n, watch=True, poll=5.0)  # fmt: skip
    wakeup.close()
    store.close()


def their_worker(url: str, ready: Any, started: Any) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="mark")
    def mark(key: str) -> None:
        started[key] = time.monotonic()

    ready.set()
    app.run_worker(
        concurrency=1, wait=True, listen_notify=True, install_signal_handlers=False,
        fetch_job_polling_interval=5.0,
    )  # fmt: skip


def wait_for(started: Any, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(started) < n:
        if time.monotonic() > deadline:
            raise click.ClickException(f"only {len(started)} of {n} jobs started in {timeout}s")
        time.sleep(0.01)


def measure_ours(url: str, n: int, gap: float) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready, started = manager.Event(), manager.dict()
        process = ctx.Process(target=our_worker, args=(url, n, ready, started))
        process.start()
        store = db.open_store(config.Settings(pool_size=2), url=url)
        ready.wait(60)
        time.sleep(0.5)  # the worker is now idle, waiting on LISTEN
        sent: dict[str, float] = {}
        for i in range(n):
            spec = JobSpec.create("bench-latency", f"bench/latency{i}", days=1)
            t0 = time.monotonic()
            job_id = store.enqueue(spec, decide=lambda s, t: LOCAL).job_id
            sent[str(job_id)] = t0
            time.sleep(gap)
        wait_for(started, n)
        process.join(30)
        store.close()
        return [(started[k] - t0) * 1000 for k, t0 in sent.items()]


def measure_theirs(url: str, n: int, gap: float) -> list[float]:
    app = procrastinate_app(url)
    with app.open():
        app.schema_manager.apply_schema()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready, started = manager.Event(), manager.dict()
        process = ctx.Process(target=their_worker, args=(url, ready, started))
        process.start()
        ready.wait(60)
        time.sleep(1.0)  # the worker is now idle, waiting on LISTEN
        sent: dict[str, float] = {}
        with app.open():
            for i in range(n):
                key = f"k{i}"
                t0 = time.monotonic()
                app.configure_task("mark").defer(key=key)
                sent[key] = t0
                time.sleep(gap)
        wait_for(started, n)
        process.terminate()
        process.join(30)
        return [(started[k] - t0) * 1000 for k, t0 in sent.items()]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
    }


@bench.command()
@click.option("--jobs", "n", default=200, show_default=True, type=click.IntRange(10, 10_000))
@click.option("--gap-ms", default=20.0, show_default=True, type=click.FloatRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def latency(n: int, gap_ms: float, as_json: bool) -> None:
    """Enqueue-to-started for a waiting local worker, against procrastinate's."""
    server = db.database_url(config.load())
    with scratch_database(server, "latency_ours") as url:
        db.open_store(config.Settings(pool_size=1), url=url).close()  # migrate first
        ours = summary(measure_ours(url, n, gap_ms / 1000))
    with scratch_database(server, "latency_procrastinate") as url:
        theirs = summary(measure_theirs(url, n, gap_ms / 1000))
    click.echo(f"{'jobs':>5}  {'':14}  {'p50 ms':>7}  {'p95 ms':>7}  {'max ms':>7}")
    for label, values in (("ours (NOTIFY)", ours), ("procrastinate", theirs)):
        click.echo(
            f"{n:>5}  {label:14}  {values['p50_ms']:>7}  {values['p95_ms']:>7}  "
            f"{values['max_ms']:>7}"
        )
    ratio = round(theirs["p95_ms"] / ours["p95_ms"], 2) if ours["p95_ms"] else None
    click.echo(f"procrastinate p95 / ours: {ratio}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "jobs": n,
                    **ours,
                    "procrastinate_p50_ms": theirs["p50_ms"],
                    "procrastinate_p95_ms": theirs["p95_ms"],
                    "procrastinate_max_ms": theirs["max_ms"],
                    "p95_ratio": ratio,
                },
                sort_keys=True,
            )
        )
