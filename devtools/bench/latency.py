"""`bin/bench latency`: enqueue-to-started for a waiting local worker (LISTEN/NOTIFY), next
to procrastinate's defer-to-start on the same PostgreSQL in the same run.

Each side has one worker process already waiting; the producer enqueues one job at a
time with a pause between, so every job finds its worker idle, alternating rounds between
the two queues so both see the same machine. A start is the moment the
worker holds the job (our Started event is committed; procrastinate's task body runs).
Times are CLOCK_MONOTONIC, which Linux shares between processes.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import click

import jobstore
from capture.attempt import Result
from capture.worker import work
from devtools.bench.store import BENCH_ROUTE, percentile, procrastinate_app, scratch_database
from jobstore import Wakeup, db
from jobstore.domain import Job
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec


def our_worker(url: str, n: int, ready: Any, started: Any) -> None:
    store = jobstore.open_store(Settings(pool_size=2), url=url)

    def claimed(job_id: UUID) -> None:  # the Started event is committed
        started[str(job_id)] = time.monotonic()

    def run(job: Job) -> Result:
        store.complete(job.id, 0, attempt=job.attempt)
        return Result(job.id, "completed")

    wakeup = Wakeup(url, "local")
    wakeup.listen()
    ready.set()
    work(
        store,
        "local",
        "latency",
        run,
        now=lambda: datetime.now(UTC),
        wakeup=wakeup,
        max_jobs=n,
        watch=True,
        poll=5.0,
        on_claim=claimed,
    )
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
        concurrency=1,
        wait=True,
        listen_notify=True,
        install_signal_handlers=False,
        fetch_job_polling_interval=5.0,
    )


def wait_for(started: Any, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(started) < n:
        if time.monotonic() > deadline:
            raise click.ClickException(f"only {len(started)} of {n} jobs started in {timeout}s")
        time.sleep(0.01)


def measure(our_url: str, their_url: str, n: int, gap: float, rounds: int) -> tuple[list, list]:
    """Both workers wait at once; the producer alternates rounds between them, so a
    machine that gets busier or quieter during the run affects both sides alike."""
    app = procrastinate_app(their_url)
    with app.open():
        app.schema_manager.apply_schema()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ours_ready, ours_started = manager.Event(), manager.dict()
        theirs_ready, theirs_started = manager.Event(), manager.dict()
        ours = ctx.Process(target=our_worker, args=(our_url, n, ours_ready, ours_started))
        theirs = ctx.Process(target=their_worker, args=(their_url, theirs_ready, theirs_started))
        ours.start()
        theirs.start()
        try:
            store = jobstore.open_store(Settings(pool_size=2), url=our_url)
            ours_ready.wait(60)
            theirs_ready.wait(60)
            time.sleep(1.0)  # both workers are idle now, waiting on LISTEN
            our_sent: dict[str, float] = {}
            their_sent: dict[str, float] = {}
            per_round = max(n // rounds, 1)
            with app.open():
                for first in range(0, n, per_round):
                    for i in range(first, min(first + per_round, n)):
                        spec = JobSpec.create("bench-latency", f"bench/latency{i}", days=1)
                        t0 = time.monotonic()
                        job_id = store.enqueue(spec, route=BENCH_ROUTE).job_id
                        our_sent[str(job_id)] = t0
                        time.sleep(gap)
                    for i in range(first, min(first + per_round, n)):
                        t0 = time.monotonic()
                        app.configure_task("mark").defer(key=f"k{i}")
                        their_sent[f"k{i}"] = t0
                        time.sleep(gap)
            wait_for(ours_started, n)
            wait_for(theirs_started, n)
            ours.join(30)  # it stops by itself after n jobs
        finally:  # ctrl-C or a failure: leave no child behind
            for child in (ours, theirs):
                if child.is_alive():
                    child.terminate()
                child.join(30)
        store.close()
        return (
            [(ours_started[k] - t0) * 1000 for k, t0 in our_sent.items()],
            [(theirs_started[k] - t0) * 1000 for k, t0 in their_sent.items()],
        )


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
    }


@click.command()
@click.option("--jobs", "n", default=200, show_default=True, type=click.IntRange(10, 10_000))
@click.option("--gap-ms", default=20.0, show_default=True, type=click.FloatRange(1, 10_000))
@click.option(
    "--rounds",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Alternate between the two queues this many times.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def latency(n: int, gap_ms: float, rounds: int, as_json: bool) -> None:
    """Enqueue-to-started for a waiting local worker, against procrastinate's."""
    server = db.database_url(load())
    with (
        scratch_database(server, "latency_ours") as our_url,
        scratch_database(server, "latency_procrastinate") as their_url,
    ):
        jobstore.open_store(Settings(pool_size=1), url=our_url).close()  # migrate first
        our_ms, their_ms = measure(our_url, their_url, n, gap_ms / 1000, rounds)
    ours, theirs = summary(our_ms), summary(their_ms)
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
