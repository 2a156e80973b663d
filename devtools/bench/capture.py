"""`bin/bench capture`: API points and requests per 1,000 fully captured pull requests,
GraphQL (against a sandbox counting `nodes(ids:)` strictly, then leniently) against
REST-only in one run, wall time with sandbox latency, and peak memory."""

from __future__ import annotations

import json
import logging
import multiprocessing
import resource
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

import jobstore
from capture.attempt import Runner
from capture.github import credentials
from capture.settings import CaptureSettings
from devtools.bench.store import BENCH_ROUTE, scratch_database
from devtools.sandbox import Options, Sandbox, World
from devtools.sandbox.limits import PER_MINUTE
from jobstore import db
from jobstore.secret import Secret
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec

log = logging.getLogger(__name__)
TOKEN = "bench-token"
REPO = "acme/widgets"


def enqueue_history(store: Any) -> Any:
    """The benchmark's job: the repository's whole history, run on the local lane."""
    spec = JobSpec.create("historical-sync", REPO, days=3650, trigger="backfill")
    return store.enqueue(spec, route=BENCH_ROUTE).job_id


def run_family(store: Any, parent: Any, run: Callable[[Any], tuple[str, Any]]) -> Any:
    """Runs the job, then the child jobs it split into, then the job again, as a worker
    would; `run` returns (outcome, details). Returns the final details."""
    outcome, details = run(parent)
    if outcome == "waiting":
        for child in store.heads.children(parent):
            child_outcome, child_details = run(child)
            if child_outcome != "completed":
                raise click.ClickException(f"child job {child}: {child_details}")
        store.route(parent, BENCH_ROUTE)
        outcome, details = run(parent)
    if outcome != "completed":
        raise click.ClickException(f"capture did not complete: {details}")
    return details


def capture_once(
    url: str, settings: CaptureSettings, transport: httpx.BaseTransport
) -> dict[str, Any]:
    """One full-history historical-sync job (and the child jobs it splits into, run in this
    process one after another) on a migrated database."""
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    runner = Runner(store, settings, transport=transport)
    job_id = enqueue_history(store)

    def run(job: Any) -> tuple[str, Any]:
        result = runner.run(job, worker="bench")
        return result.outcome, result

    start = time.perf_counter()
    try:
        result = run_family(store, job_id, run)
    finally:
        runner.close()
        store.close()
    wall = time.perf_counter() - start
    return {"items": result.items, "wall_s": wall}


def settings_for(base_url: str, force_rest: bool = False) -> CaptureSettings:
    return CaptureSettings(
        token=Secret(TOKEN),
        api_url=base_url,
        graphql_url=f"{base_url}/graphql",
        force_rest=force_rest,
    )


def in_process(
    world: World, url: str, force_rest: bool, node_count: str = "strict"
) -> dict[str, Any]:
    # A secondary limit would make the REST run wait (the sandbox's, or the client's own
    # pace under it: 6,000 REST requests at 800 a minute are minutes of real sleep). The
    # benchmark counts requests, so both are lifted for it: the sandbox's by its options,
    # the client's while its credential pool is made (it copies the pace then).
    unlimited = dict.fromkeys(PER_MINUTE, 10**9)
    options = Options(tokens={TOKEN: 10**9}, node_count=node_count, per_minute=unlimited)
    sandbox = Sandbox(world, options)
    saved = dict(credentials.PACE)
    credentials.PACE.update(dict.fromkeys(saved, 10**9))
    try:
        outcome = capture_once(
            url, settings_for("http://sandbox.invalid", force_rest), sandbox.transport()
        )
    finally:
        credentials.PACE.update(saved)
    return {
        **outcome,
        "graphql": sandbox.ledger.summary("graphql"),
        "rest": sandbox.ledger.summary("rest"),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux ru_maxrss
    survives exec, so a spawned child would report its parent's peak at fork time."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def runner_process(url: str, base_url: str, job_id: str, result: Any) -> None:
    """One runner: one job attempt in a fresh process, as a matrix leg or a worker would."""
    settings = settings_for(base_url)
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    runner = Runner(store, settings)
    outcome = runner.run(job_id, worker="bench")
    runner.close()
    store.close()
    peak = peak_rss_mb()
    result.put(
        {
            "outcome": outcome.outcome,
            "detail": outcome.detail,
            "items": outcome.items,
            "peak_rss_mb": peak,
        }
    )


class Waited:
    """A sandbox's sleep that only counts: a benchmark's minutes of network latency are
    added to its wall time, not spent."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


def over_http(world: World, url: str, latency: float) -> dict[str, Any]:
    """A full-history capture against the sandbox over HTTP, each job attempt in its own
    process (the parent, then each child job it split into, then the parent again): wall
    time, and the highest peak memory of any of those runners."""
    waited = Waited()  # the latency is played on a simulated clock: counted, not slept
    sandbox = Sandbox(world, Options(tokens={TOKEN: 10**9}, latency=latency, sleep=waited))
    served = sandbox.serve()
    ctx = multiprocessing.get_context("spawn")
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    parent = enqueue_history(store)
    runs: list[dict] = []

    def run(job_id: Any) -> tuple[str, dict]:
        queue = ctx.Queue()
        process = ctx.Process(target=runner_process, args=(url, served.url, str(job_id), queue))
        process.start()
        try:
            outcome = queue.get(timeout=3600)
        finally:  # ctrl-C or a failed runner: leave no child behind
            if process.is_alive():
                process.terminate()
            process.join(30)
        runs.append(outcome)
        log.info(
            "runner %d (%s): peak RSS %.1f MB",
            len(runs),
            outcome["outcome"],
            outcome["peak_rss_mb"],
        )
        return outcome["outcome"], outcome

    start = time.perf_counter()
    try:
        first = run_family(store, parent, run)
    finally:
        store.close()
        served.stop()
    wall = time.perf_counter() - start
    return {
        "items": first["items"],
        "wall_s": wall + waited.seconds,  # the runners wait for each answer in turn
        "latency_s": waited.seconds,
        "runners": len(runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        **sandbox.ledger.summary("graphql"),
    }


@click.command()
@click.option("--prs", default=1000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--latency-ms", default=100.0, show_default=True, type=click.FloatRange(0, 5000))
@click.option(
    "--memory-prs",
    default=10_000,
    show_default=True,
    type=click.IntRange(100, 100_000),
    help="Pull requests captured over HTTP in a child process, for wall time and memory.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def capture(prs: int, latency_ms: float, memory_prs: int, as_json: bool) -> None:
    """Points per 1,000 pull requests, GraphQL against REST-only; wall time (the latency
    played on a simulated clock); peak memory. About 3 minutes at the defaults."""
    now = datetime.now(UTC)
    world = World(seed=7, now=now)
    world.add_repository(REPO, prs, 730)
    server = db.database_url(load())
    runs = {}
    for path, force_rest, node_count in (
        ("strict", False, "strict"),
        ("lenient", False, "lenient"),
        ("rest", True, "strict"),
    ):
        with scratch_database(server, f"capture_{path}") as url:
            jobstore.migrate(url)
            runs[path] = in_process(world, url, force_rest, node_count)
    big = World(seed=8, now=now)
    big.add_repository(REPO, memory_prs, 730)
    with scratch_database(server, "capture_http") as url:
        jobstore.migrate(url)
        http = over_http(big, url, latency_ms / 1000)
    per = 1000 / prs

    def per_1000(path: str, kind: str, what: str) -> float:
        return round(runs[path][kind][what] * per, 1)

    strict_points = runs["strict"]["graphql"]["points"]
    rest_points = runs["rest"]["rest"]["points"]
    result = {
        "prs": prs,
        "graphql_points_per_1000_prs_strict": per_1000("strict", "graphql", "points"),
        "graphql_points_per_1000_prs_lenient": per_1000("lenient", "graphql", "points"),
        "graphql_requests_per_1000_prs_strict": per_1000("strict", "graphql", "requests"),
        "graphql_requests_per_1000_prs_lenient": per_1000("lenient", "graphql", "requests"),
        "rest_requests_per_1000_prs_strict": per_1000("strict", "rest", "requests"),
        "rest_requests_per_1000_prs_lenient": per_1000("lenient", "rest", "requests"),
        "rest_only_points_per_1000_prs": per_1000("rest", "rest", "points"),
        "ratio_strict": round(rest_points / max(strict_points, 1), 1),
        "ratio_lenient": round(rest_points / max(runs["lenient"]["graphql"]["points"], 1), 1),
        "wall_s": round(http["wall_s"], 2),
        "wall_prs": memory_prs,
        "wall_latency_ms": latency_ms,
        "wall_graphql_requests": http["requests"],
        "peak_rss_mb": round(http["peak_rss_mb"], 1),
        "runners": http["runners"],
    }
    click.echo(f"{'run':26} {'GraphQL points':>15} {'GraphQL requests':>17} {'REST requests':>14}")
    for path, label in (
        ("strict", "GraphQL, strict counting"),
        ("lenient", "GraphQL, lenient counting"),
        ("rest", "REST only"),
    ):
        click.echo(
            f"{label:26} {per_1000(path, 'graphql', 'points'):>15} "
            f"{per_1000(path, 'graphql', 'requests'):>17} {per_1000(path, 'rest', 'requests'):>14}"
        )
    click.echo("(per 1,000 pull requests)")
    click.echo(
        f"REST-only uses {result['ratio_strict']}x the points of GraphQL under strict counting, "
        f"{result['ratio_lenient']}x under lenient"
    )
    click.echo(
        f"{memory_prs:,} PRs over HTTP with {latency_ms:g} ms latency (strict counting): "
        f"{result['wall_s']} s, {result['wall_graphql_requests']} GraphQL requests, "
        f"{result['runners']} job runners, highest peak RSS of a runner {result['peak_rss_mb']} MB"
    )
    if as_json:
        click.echo(json.dumps(result))
