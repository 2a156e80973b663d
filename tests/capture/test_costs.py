"""What a job costs the database, held as the data grows: every per-job query answered by
an index (EXPLAIN over a fleet's worth of stored rows), and the statements, transactions
and connections of a real `bin/run-job` process and of `Dispatcher.submit`, counted from
the server's log of every statement (pg_stat_statements misses utility statements sent
through the extended protocol)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from freezegun import freeze_time
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

import jobstore
from capture.freshness.registry import CONTRIBUTORS_DUE, RECONCILE_DUE
from capture.storage import (
    MARK_GONE,
    OBSERVED,
    PULLS_OF,
    RECENTLY_ACTIVE,
    REFRESHED,
    STALE_NAMES,
    TABLES,
    upsert,
)
from devtools import fleetdata
from devtools.bench.worker import logged, refresh_jobs
from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox, World
from jobstore.dispatcher import Dispatcher
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec
from tests.conftest import ROOT

CAPTURE_TABLES = {
    "repositories",
    "contributors",
    "pull_requests",
    "reviews",
    "comments",
    "pr_files",
    "commits",
    "rest_etags",
    "refresh_watermarks",
    "sync_watermarks",
    "repo_probes",
    "tracked_repositories",
}
NOW = datetime.now(UTC)
WORK = ("--lane", "local", "--max-jobs")


@pytest.fixture
def fleet(database_url):
    """300 repositories' captured data, and 20,000 tracked repositories with their probes,
    watermarks and cached answers, analysed (a small table is read whole, rightly)."""
    fleetdata.fill(database_url, 300)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracked_repositories (repository, tier, added_at, next_due) "
            "SELECT 'fleet/t' || g, 'cold', now(), now() + make_interval(mins => g) "
            "FROM generate_series(1, 20000) g"
        )
        for table, columns in (
            ("repo_probes", "repository, fresh_as_of"),
            ("refresh_watermarks", "repository, updated_at"),
        ):
            conn.execute(
                f"INSERT INTO {table} ({columns}) SELECT repository, now() "
                "FROM tracked_repositories"
            )
        conn.execute(
            "INSERT INTO rest_etags (credential, url, etag, body) "
            "SELECT 'c', 'https://api/' || g, 'W/x', '{}' FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE")
    return database_url


def scanned(conn: psycopg.Connection, query: str, params: object) -> set[str]:
    """The capture tables a statement's plan reads by a sequential scan."""
    (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()

    def walk(node: dict) -> set[str]:
        found = set()
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in CAPTURE_TABLES:
            found.add(node["Relation Name"])
        for child in node.get("Plans", ()):
            found |= walk(child)
        return found

    return walk(plan[0]["Plan"])


def test_every_per_job_query_uses_an_index(fleet):
    big = fleetdata.BIG
    row = {"id": 1, "node_id": "x", "full_name": "a/b", "created_at": None}
    queries = {
        "the query planner's histogram": (OBSERVED, (big, 500)),
        "a repository by name": (
            "SELECT id FROM repositories WHERE lower(full_name) = lower(%s)",
            (big,),
        ),
        "node ids by number": (f"{PULLS_OF} AND p.number = ANY(%s)", (big, [1, 2, 3])),
        "a window's pull requests": (
            f"{PULLS_OF} AND p.created_at >= %s AND p.created_at < %s",
            (big, NOW - timedelta(days=3), NOW),
        ),
        "the refresh watermark and fresh-as-of": (
            REFRESHED,
            {"name": big, "newest": NOW, "listed_at": NOW, "comments": NOW},
        ),
        "a name another repository held, marked stale": (
            STALE_NAMES,
            {"names": [big.lower()], "ids": [1]},
        ),
        "the pull requests a reconciliation captures": (
            RECENTLY_ACTIVE,
            (big, NOW - timedelta(days=7), 100),
        ),
        "the repositories due a reconciliation": (
            RECONCILE_DUE,
            {
                "now": NOW,
                "limit": 50,
                "active": NOW - timedelta(days=2),
                "always": True,
                "healthy": NOW - timedelta(minutes=30),
                "hooked": timedelta(days=1),
            },
        ),
        "the contributors due a login re-read": (CONTRIBUTORS_DUE, (NOW, 200)),
        "a page of comments": (upsert("comments"), (Jsonb([]),)),
        "a changed file list replaced": (
            "DELETE FROM pr_files WHERE pull_request_id = ANY(%s)",
            ([fleetdata.BASE * 2 + 1],),
        ),
        "a repository row": (upsert("repositories"), (Jsonb([row]),)),
        "reviews GitHub no longer lists, marked gone": (
            MARK_GONE["reviews"],
            ([fleetdata.BASE * 2 + 1], [1, 2]),
        ),
        "comments GitHub no longer lists, marked gone": (
            MARK_GONE["comments"],
            ([fleetdata.BASE * 2 + 1] * 2, ["issue", "review"], [1, 2]),
        ),
        "an ETag": (
            "SELECT etag, body, link FROM rest_etags WHERE credential = %s AND url = %s",
            ("c", "u"),
        ),
        "the started bootstraps a pass checks": (
            "SELECT repository, bootstrap_jobs, bootstrap_tries, workspace FROM "
            "tracked_repositories WHERE bootstrap = 'started' "
            "ORDER BY bootstrap_checked_at NULLS FIRST LIMIT %s",
            (500,),
        ),
        "the planner's due repositories": (
            "SELECT repository FROM tracked_repositories WHERE next_due <= %s "
            "ORDER BY next_due LIMIT 5000",
            (NOW,),
        ),
    }
    assert set(TABLES) <= CAPTURE_TABLES
    with psycopg.connect(fleet) as conn:
        for name, (query, params) in queries.items():
            assert scanned(conn, query, params) == set(), name


@pytest.fixture
def statement_log(server_url, database_url):
    """Every statement of this test's database logged, with the connection's name."""
    from tests.conftest import server_home

    if os.environ.get("TEST_DATABASE_URL"):
        raise AssertionError("counting statements reads the embedded server's log")
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
        conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %a|'")
        conn.execute("SELECT pg_reload_conf()")
    return server_home() / "server.log"


def counted(log: Path, start: int, app: str) -> dict[str, int]:
    seen = logged(log, start, app)
    pids = set()
    with log.open(errors="replace") as handle:
        handle.seek(start)
        for line in handle:
            if f" {app}" in line and "|LOG:  " in line:
                pids.add(line.split("[", 1)[1].split("]", 1)[0])
    return {**seen, "connections": len(pids)}


def settle(pool: ConnectionPool) -> None:
    """Until every connection the pool began is made. A request that another connection
    served first leaves its new one to be set up (a statement of its own) in the
    background, which on a loaded machine can land in the next measurement. Counted in
    steps, not by the clock, which freezegun stands still."""
    for _ in range(3000):
        stats = pool.get_stats()
        if stats["pool_size"] == stats["pool_available"]:
            return
        time.sleep(0.01)
    raise AssertionError(f"the pool kept making connections: {pool.get_stats()}")


def run_worker(env: dict[str, str], jobs: int) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run-job"), *WORK, str(max(jobs, 1))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_a_worker_spends_few_statements_and_connections_per_refresh(database_url, statement_log):
    """`bin/run-job` working refreshes that find nothing new, then one changed pull
    request each: per job (a run with no job subtracted), and per process."""
    jobs = 12
    world = World(seed=3, now=NOW - timedelta(minutes=5))
    names = [f"costs/r{i}" for i in range(jobs)]
    for name in names:
        world.add_repository(name, 3, 30)
    served = Sandbox(world, Options(tokens={DEFAULT_TOKEN: 10**9})).serve()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "PGAPPNAME"))}
    env = {
        **keep,
        "DATABASE_URL": database_url,
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_API_URL": served.url,
        "GITHUB_GRAPHQL_URL": f"{served.url}/graphql",
    }
    store = jobstore.open_store(Settings(pool_size=1), url=database_url)
    try:
        start = statement_log.stat().st_size
        run_worker(env, 0)
        idle = counted(statement_log, start, "prcapture-run-job")
        per_job = {}
        for phase, changed in (("refresh0", 0), ("refresh1", 1)):
            refresh_jobs(store, world, names, phase, changed)
            start = statement_log.stat().st_size
            run_worker(env, jobs)
            seen = counted(statement_log, start, "prcapture-run-job")
            per_job[phase] = {
                "statements": (seen["statements"] - idle["statements"]) / jobs,
                "transactions": (seen["transactions"] - idle["transactions"]) / jobs,
                "connections": seen["connections"],
            }
        assert store.heads.count("completed") == 2 * jobs
    finally:
        store.close()
        served.stop()
    print(json.dumps(per_job))
    assert per_job["refresh0"]["statements"] <= 12, per_job
    assert per_job["refresh0"]["transactions"] <= 4, per_job
    assert per_job["refresh1"]["statements"] <= 40, per_job
    assert per_job["refresh1"]["transactions"] <= 6, per_job
    assert max(p["connections"] for p in per_job.values()) <= 3, per_job
    assert served.connections <= 2 * 3  # an HTTP client per process (and its keep-alive)


def test_submit_is_one_transaction(database_url, statement_log, monkeypatch):
    """Dispatcher.submit of a job for the local lane: its enqueue, route and wake-up in
    one statement, once lane health and the rollout are fresh in the process (both
    submits within their caches' second: the clock stands still, so a loaded machine's
    pause between them cannot expire a cache)."""
    monkeypatch.setenv("PGAPPNAME", "prcapture-costs")
    store = jobstore.open_store(Settings(), url=database_url)
    try:
        dispatcher = Dispatcher.open(store, httpx.Client(), lambda _type: ("local",))
        local = Route("local", "explicit", "test")
        spec = JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=[1])
        with freeze_time(datetime.now(UTC).replace(microsecond=0), tick=False):
            start = statement_log.stat().st_size
            first = dispatcher.submit(spec, datetime.now(UTC), "local")
            cold = counted(statement_log, start, "prcapture-costs")
            settle(store.recorder.datastore.pool)
            again = JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=[2])
            start = statement_log.stat().st_size
            second = dispatcher.submit(again, datetime.now(UTC), "local")
            warm = counted(statement_log, start, "prcapture-costs")
    finally:
        store.close()
    assert (first.job.lane, second.job.lane) == (local.lane, local.lane)
    assert second.sent is not None
    assert second.sent.ok
    assert warm["statements"] <= 8, warm
    assert warm["transactions"] == 1, warm
    assert cold["statements"] <= 8, cold  # lane health and the rollout read first
