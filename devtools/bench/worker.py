"""`bin/bench worker`: what one job costs a worker, end to end through `bin/run-job` against
the sandbox, with a fleet's captured data already stored.

On a PostgreSQL of its own (pg_stat_statements loaded; every statement logged while jobs
run one at a time, none at --concurrency, whose runs are timed as deployed): 10,000
repositories' data stored in bulk (devtools.fleetdata), then `--jobs` repository-refresh
jobs that find nothing new (0 items) and as many that find one changed pull request (1
item), each batch worked by one `bin/run-job --lane local --max-jobs N` process, one job
at a time and at `--concurrency` (4) jobs at once. Per job:
statements and transactions (from the server's log, BEGIN and COMMIT not counted as
statements; a run with no job subtracted, so start-up is not counted), PostgreSQL
execution time (pg_stat_statements);
per process: connections and HTTP connections; throughput from the first Started to the
last Completed event. The peer in the same run is the bare job store's worker path (claim
and complete, nothing captured) on the same server.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

import jobstore
from capture.storage import Storage
from devtools import fleetdata
from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox, World
from jobstore.db import Database
from jobstore.embedded import Server
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent.parent
LOCAL = Route("local", "explicit", "bench")
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")
TOP = 12  # statements listed per run, most called first
WORK = ("--lane", "local", "--max-jobs")
# phase: (pull requests changed, at --concurrency)
PHASES = {"0": (0, False), "1": (1, False), "0c": (0, True), "1c": (1, True)}


def counters(url: str) -> dict[str, float]:
    """What the server has counted for this database so far (after its backends exited)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        db = conn.execute(
            "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        rows = conn.execute(
            "SELECT query, calls, total_exec_time FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    control = sum(calls for query, calls, _ in rows if query.strip().upper() in CONTROL)
    top = sorted(rows, key=lambda r: -r[1])[:TOP]
    return {
        "top": [(calls, " ".join(query.split())[:110]) for query, calls, _ in top],
        "statements": sum(calls for _, calls, _ in rows) - control,
        "commits": db[0],
        "sessions": db[1],
        "exec_ms": sum(ms for query, _, ms in rows if "pg_stat" not in query),
    }


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


LOGGED = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] ([^|]*)\|LOG:  (?:statement|execute [^:]*): (.*)$")


def logged(log: Path, start: int, app: str = "prcapture-run-job") -> dict[str, int]:
    """Statements and transactions of the worker's connections, from the server's log
    (every statement, as the server ran it: pg_stat_statements misses utility statements
    sent through the extended protocol, such as LOCK and NOTIFY). A statement outside a
    BEGIN ... COMMIT is a transaction of its own."""
    statements = transactions = 0
    open_: set[str] = set()
    with log.open(errors="replace") as handle:
        handle.seek(start)
        for line in handle:
            found = LOGGED.match(line)
            if not found or not found.group(2).startswith(app):
                continue
            pid, text = found.group(1), found.group(3).strip().upper()
            if text.startswith("BEGIN"):
                open_.add(pid)
            elif text.startswith(("COMMIT", "ROLLBACK")):
                open_.discard(pid)
                transactions += 1
            else:
                statements += 1
                transactions += pid not in open_
    return {"statements": statements, "transactions": transactions}


def logging_statements(url: str, on: bool) -> None:
    """Every statement of the worker's sessions logged (to count them) or none (to time
    them: a server logging every statement spends a write on each)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE bench_worker SET log_statement = '{'all' if on else 'none'}'")
        conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %a|'")
        conn.execute("SELECT pg_reload_conf()")


def run_worker(env: dict[str, str], jobs: int) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run-job"), *WORK, str(max(jobs, 1))],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise click.ClickException(f"bin/run-job exited {done.returncode}: {' | '.join(tail)}")
    return time.monotonic() - started


def measured(
    url: str, env: dict[str, str], job_ids: list[Any], served: Any, log: Path
) -> dict[str, Any]:
    """Works `job_ids` with one bin/run-job process; what the database and the sandbox saw."""
    reset(url)
    before, connections = counters(url), served.connections
    start = log.stat().st_size
    run_worker(env, len(job_ids))
    after = counters(url)
    seen = logged(log, start)
    with psycopg.connect(url) as conn:
        first, last, ended = conn.execute(  # the views, caught up as the script exited
            "SELECT min(started_at), max(finished_at), count(*) FILTER (WHERE status = "
            "'completed') FROM capture_jobs WHERE job_id = ANY(%s)",
            (list(job_ids),),
        ).fetchone()
    if ended != len(job_ids):
        missing = len(job_ids) - ended
        raise click.ClickException(f"{missing} of {len(job_ids)} jobs did not complete")
    seconds = max((last - first).total_seconds(), 1e-6)
    return {
        "statements": seen["statements"],
        "commits": seen["transactions"],
        "sessions": after["sessions"] - before["sessions"],
        "exec_ms": after["exec_ms"],
        "top": after["top"],
        "http_connections": served.connections - connections,
        "jobs_per_s": len(job_ids) / seconds,
    }


def refresh_jobs(store: Any, world: World, names: list[str], phase: str, changed: int) -> list:
    """A repository-refresh per repository as the planner makes it: since the watermark,
    which leaves `changed` pull requests (0 or 1) updated at or after it (comments too)."""
    now = datetime.now(UTC)
    specs = []
    for name in names:
        newest = max(pr.updated_at for pr in world.repositories[name].pulls.values())
        since = newest if changed else newest + timedelta(seconds=1)
        specs.append(
            JobSpec.create(
                "repository-refresh",
                name,
                since=since,
                until=now,
                trigger="scheduled",
                dedupe_key=f"repository-refresh:{name}:{phase}",
                params={"comments_since": since.isoformat()},
            )
        )
    return [e.job_id for e in store.enqueue_many(specs, now, LOCAL)]


def bare(url: str, jobs: int) -> float:
    """The peer: the job store's worker path alone (claim, complete; one at a time)."""
    store = jobstore.open_store(Settings(pool_size=2), url=url)
    try:
        specs = [
            JobSpec.create("pr-reviews", "bench/bare", pr_numbers=[i], dedupe_key=f"bare:{i}")
            for i in range(1, jobs + 1)
        ]
        store.enqueue_many(specs, datetime.now(UTC), LOCAL)
        started = time.monotonic()
        while claimed := store.claim_next("local", "bare"):
            store.complete(claimed[0].id, 0, held=claimed[0])
        return jobs / (time.monotonic() - started)
    finally:
        store.close()


def observed_ms(url: str, rounds: int = 15) -> float:
    storage = Storage(Database(url, "bench"))
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        storage.observed(fleetdata.BIG)
        times.append((time.perf_counter() - started) * 1000)
    storage.db.close()
    return statistics.median(times[1:])


def run(jobs: int, repos: int, concurrency: int = 4) -> dict[str, Any]:
    world = World(seed=3, now=datetime.now(UTC) - timedelta(minutes=5))
    names = [f"bench/r{i}" for i in range(jobs)]
    for name in names:
        world.add_repository(name, 3, 30)
    # A credential a phase: each keeps to its pace (1,800 GraphQL points a minute, under
    # GitHub's secondary limit of 2,000), which one phase's jobs would spend for the next.
    tokens = {f"{DEFAULT_TOKEN}-{phase}": f"bench-{phase}" for phase in PHASES}
    sandbox = Sandbox(world, Options(tokens=dict.fromkeys(tokens, 10**9), users=tokens))
    served = sandbox.serve()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        server = Server(Path(tmp) / "jobstore")
        url = server.start().replace("/postgres?", "/bench_worker?")
        try:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench_worker")
            jobstore.migrate(url)
            click.echo(f"storing {repos} repositories' captured data ...", err=True)
            filled = fleetdata.fill(url, repos)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            keep = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("GITHUB", "INNGEST", "PGAPPNAME"))
            }
            env = {
                **keep,
                "DATABASE_URL": url,
                "GITHUB_TOKEN": f"{DEFAULT_TOKEN}-0",  # start-up alone: the first phase's
                "GITHUB_API_URL": served.url,
                "GITHUB_GRAPHQL_URL": f"{served.url}/graphql",
            }
            log = server.log
            logging_statements(url, True)
            start = log.stat().st_size
            run_worker(env, 0)  # start-up and shutdown alone, to subtract
            seen = logged(log, start)
            idle = {"statements": seen["statements"], "commits": seen["transactions"]}
            phases = {}
            for phase, (changed, threaded) in PHASES.items():
                if threaded:  # throughput as deployed: statements are counted one at a time
                    logging_statements(url, False)
                store = jobstore.open_store(Settings(pool_size=1), url=url)
                try:
                    ids = refresh_jobs(store, world, names, phase, changed=changed)
                finally:
                    store.close()
                phase_env = {
                    **env,
                    "GITHUB_TOKEN": f"{DEFAULT_TOKEN}-{phase}",
                    "CAPTURE_WORKER_CONCURRENCY": str(concurrency if threaded else 1),
                }
                phases[phase] = measured(url, phase_env, ids, served, log)
            r0, r1 = phases["0"], phases["1"]
            peer = bare(url, jobs)
            observed = observed_ms(url)
        finally:
            server.stop()
            served.stop()
            if os.environ.get("BENCH_KEEP_LOG"):
                (Path(tempfile.gettempdir()) / "bench-worker.log").write_bytes(log.read_bytes())
    per = {
        name: {
            "statements": (r["statements"] - idle["statements"]) / jobs,
            "transactions": (r["commits"] - idle["commits"]) / jobs,
            "pg_ms": r["exec_ms"] / jobs,
        }
        for name, r in (("refresh0", r0), ("refresh1", r1))
    }
    return {
        "top": {"refresh0": r0["top"], "refresh1": r1["top"]},
        "jobs": jobs,
        "repos_stored": repos,
        "stored": filled,
        "concurrency": concurrency,
        # one bin/run-job process at --concurrency N (the figures)
        "refresh0_jobs_per_s": round(phases["0c"]["jobs_per_s"], 1),
        "refresh1_jobs_per_s": round(phases["1c"]["jobs_per_s"], 1),
        # the same process one job at a time, and the bare job store's worker path
        "refresh0_jobs_per_s_one_at_a_time": round(r0["jobs_per_s"], 1),
        "refresh1_jobs_per_s_one_at_a_time": round(r1["jobs_per_s"], 1),
        "bare_store_jobs_per_s": round(peer, 1),
        "refresh0_vs_bare": round(phases["0c"]["jobs_per_s"] / peer, 2),
        "statements_per_refresh0": round(per["refresh0"]["statements"], 1),
        "statements_per_refresh1": round(per["refresh1"]["statements"], 1),
        "transactions_per_refresh0": round(per["refresh0"]["transactions"], 1),
        "transactions_per_refresh1": round(per["refresh1"]["transactions"], 1),
        "pg_ms_per_refresh0": round(per["refresh0"]["pg_ms"], 2),
        "pg_ms_per_refresh1": round(per["refresh1"]["pg_ms"], 2),
        # one process works each phase's jobs (up to 200 in the terms): what it
        # opened one job at a time, and at --concurrency N (a connection per thread at most)
        "connections_per_200_jobs": max(r0["sessions"], r1["sessions"]),
        "http_connections_per_200_jobs": max(r0["http_connections"], r1["http_connections"]),
        "connections_at_concurrency": max(p["sessions"] for p in phases.values()),
        "http_connections_at_concurrency": max(p["http_connections"] for p in phases.values()),
        # at the fleet size stored (`repos_stored`; 10,000 at the defaults)
        "observed_ms_256_prs_at_10k_repos": round(observed, 2),
    }


@click.command()
@click.option("--jobs", default=200, show_default=True, type=click.IntRange(10, 5000))
@click.option(
    "--repos",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Repositories of captured data stored first (10,000: about 100 s to store).",
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(2, 64),
    help="bin/run-job --concurrency of the measured runs (each also run one at a time).",
)
@click.option("--top", is_flag=True, help="Also list the statements run, most called first.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def worker(jobs: int, repos: int, concurrency: int, top: bool, as_json: bool) -> None:
    """What a job costs a worker (statements, transactions, connections, throughput) with a
    fleet's data stored; about 3 minutes at the defaults."""
    result = run(jobs, repos, concurrency)
    rows = [(key, value) for key, value in result.items() if key not in ("stored", "top")]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:{width}}  {value}")
    if top:
        for phase, statements in result["top"].items():
            click.echo(f"\n{phase}: statements over {jobs} jobs, most called first")
            for calls, query in statements:
                click.echo(f"  {calls:6}  {query}")
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "top"}))
