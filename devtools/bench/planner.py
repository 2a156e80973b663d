"""`bin/bench planner`: the freshness planner and the read side at fleet size, on a
PostgreSQL of its own: `--repos` tracked repositories (100,000) with their probes and
watermarks, and `--heads` job heads (1,000,000), stored in bulk with SQL.

Measured: a planner pass with nothing due (wall time, statements), a pass with `--due`
repositories due (probes in flight together against the sandbox, which knows none of
them: each answers "not found"), `bin/jobs freshness --json` over `--due` repositories,
and a repository looked up by name. The peer in the same run: reading every tracked
repository, as a pass did before it read only what is due.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

import jobstore
from capture.freshness.loop import plan_once
from capture.freshness.registry import Registry
from capture.freshness.rules import FreshnessSettings
from capture.github.budgets import MemoryBudgets
from capture.github.client import GitHubFactory
from capture.settings import CaptureSettings
from capture.storage import Storage
from devtools.bench.worker import logged
from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox, World
from jobstore.dispatcher import Dispatcher
from jobstore.embedded import Server
from jobstore.secret import Secret
from jobstore.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = FreshnessSettings(fast_lane="local", bulk_lane="local", refresh_lane="local")
APP = "prcapture-bench-planner"

FILL = (
    "INSERT INTO tracked_repositories (repository, tier, added_at, bootstrap, next_due) "
    "SELECT 'fleet-' || (g %% 1000) || '/repo-' || g, (ARRAY['hot','warm','cold'])[1 + g %% 3], "
    "now() - interval '30 days', 'done', now() + make_interval(secs => 600 + g %% 3000) "
    "FROM generate_series(1, %(repos)s) g",
    "INSERT INTO repo_probes (repository, fresh_as_of, probed_at, last_success) "
    "SELECT repository, now(), now(), now() FROM tracked_repositories",
    "INSERT INTO refresh_watermarks (repository, updated_at) "
    "SELECT repository, now() - interval '1 day' FROM tracked_repositories",
    "INSERT INTO repositories (id, node_id, full_name, created_at) "
    "SELECT 7000000000 + row_number() OVER (), 'R_' || repository, repository, now() "
    "FROM tracked_repositories",
    "INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, attempt, "
    "version, dedupe_key, created_at, last_event_at) "
    "SELECT md5(g::text)::uuid, 'repository-refresh', 'fleet-' || (g %% 1000) || '/repo-' "
    "|| (g %% %(repos)s), 'completed', 'local', 'normal', 1, 4, 'k' || g, "
    "now() - make_interval(secs => g), now() - make_interval(secs => g) "
    "FROM generate_series(1, %(heads)s) g",
)


def fill(url: str, repos: int, heads: int) -> float:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for statement in FILL:
            conn.execute(statement, {"repos": repos, "heads": heads})
        conn.execute("ANALYZE")
    return time.monotonic() - started


def timed(work: Any, rounds: int = 5) -> float:
    """The median of `rounds` runs of `work()`, in milliseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(repos: int, heads: int, due: int) -> dict[str, Any]:
    os.environ["PGAPPNAME"] = APP
    sandbox = Sandbox(World(seed=1, now=datetime.now(UTC)), Options(tokens={DEFAULT_TOKEN: 10**9}))
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as tmp:
        server = Server(Path(tmp) / "jobstore")
        url = server.start().replace("/postgres?", "/bench_planner?")
        try:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench_planner")
            jobstore.migrate(url)
            click.echo(f"storing {repos} tracked repositories and {heads} job heads ...", err=True)
            fill_s = fill(url, repos, heads)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ALTER DATABASE bench_planner SET log_statement = 'all'")
                conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %a|'")
                conn.execute("SELECT pg_reload_conf()")
            store = jobstore.open_store(Settings(pool_size=4), url=url)
            registry = Registry(store.database("registry"))
            settings = CaptureSettings(
                token=Secret(DEFAULT_TOKEN),
                api_url="http://sandbox.invalid",
                graphql_url="http://sandbox.invalid/graphql",
            )
            factory = GitHubFactory(settings, MemoryBudgets(), transport=sandbox.transport())
            gh = factory.github()
            dispatcher = Dispatcher(store, {}, {})
            plan_once(registry, dispatcher, gh, datetime.now(UTC), SETTINGS)  # warm up
            start = server.log.stat().st_size
            idle_ms = timed(
                lambda: plan_once(registry, dispatcher, gh, datetime.now(UTC), SETTINGS)
            )
            idle_statements = logged(server.log, start, APP)["statements"] / 5
            everything_ms = timed(lambda: registry.load(store.active), rounds=3)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(  # last seen fresh two days ago: every tier's probe is due
                    "WITH d AS (UPDATE tracked_repositories SET next_due = now() - interval "
                    "'1 second' WHERE repository IN (SELECT repository FROM "
                    "tracked_repositories ORDER BY repository LIMIT %s) RETURNING repository) "
                    "UPDATE repo_probes p SET fresh_as_of = now() - interval '2 days' FROM d "
                    "WHERE d.repository = p.repository",
                    (due,),
                )
            started = time.perf_counter()
            report = plan_once(
                registry,
                dispatcher,
                gh,
                datetime.now(UTC),
                FreshnessSettings(**{**SETTINGS.__dict__, "load_limit": due}),
            )
            due_ms = (time.perf_counter() - started) * 1000
            probe_queries = sum(1 for e in sandbox.ledger.entries if e.kind == "graphql")
            env = {k: v for k, v in os.environ.items() if k != "PGAPPNAME"}
            env["DATABASE_URL"] = url
            freshness_ms = timed(
                lambda: subprocess.run(
                    [sys.executable, str(ROOT / "bin" / "jobs"), "freshness", "--json"],
                    env=env,
                    capture_output=True,
                    check=True,
                    timeout=600,
                ),
                rounds=3,
            )
            bare_ms = timed(
                lambda: subprocess.run(
                    [sys.executable, str(ROOT / "bin" / "jobs"), "--version"],
                    env=env,
                    capture_output=True,
                    check=True,
                ),
                rounds=3,
            )
            storage = Storage(store.database("storage"))
            lookup_ms = timed(lambda: storage.repository_id(f"FLEET-7/Repo-{repos - 3}"), 50)
            factory.close()
            store.close()
        finally:
            server.stop()
    return {
        "repos": repos,
        "job_heads": heads,
        "fill_s": round(fill_s, 1),
        "planner_pass_nothing_due_ms": round(idle_ms, 1),
        "planner_pass_nothing_due_statements": round(idle_statements, 1),
        "peer_read_every_tracked_ms": round(everything_ms, 1),
        "ratio": round(everything_ms / idle_ms, 1),
        "due": due,
        "planner_pass_all_due_ms": round(due_ms, 1),
        "probe_queries": probe_queries,
        "probed": report.probed,
        "jobs_freshness_json_ms": round(freshness_ms, 1),
        "script_start_ms": round(bare_ms, 1),
        "repository_lookup_ms": round(lookup_ms, 3),
    }


@click.command()
@click.option("--repos", default=100_000, show_default=True, type=click.IntRange(1000, 10**6))
@click.option("--heads", default=1_000_000, show_default=True, type=click.IntRange(0, 10**7))
@click.option("--due", default=50_000, show_default=True, type=click.IntRange(100, 10**6))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def planner(repos: int, heads: int, due: int, as_json: bool) -> None:
    """The freshness planner and `bin/jobs freshness` at fleet size; about 3 minutes."""
    result = run(repos, heads, min(due, repos))
    width = max(len(key) for key in result)
    for key, value in result.items():
        click.echo(f"{key:{width}}  {value}")
    if as_json:
        click.echo(json.dumps(result))
