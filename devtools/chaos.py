"""`make chaos`: faults a user meets, driven through the scripts as real processes against
an embedded PostgreSQL of its own (so it can be stopped and made read-only) and the
sandbox GitHub over HTTP. Each scenario is reported as held or not, in one line.

Nothing lost: every job ends completed (or failed when it should), with the captured rows
equal to the sandbox's. Nothing doubled: rows are counted against the world.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict

import jobstore
from capture.cli.common import Command, version_option
from capture.cli.logs import log_options
from devtools.playground import ROOT, script_env
from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox, World
from jobstore.embedded import Server
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec

REPO = "acme/chaos"
PULLS = 60


@dataclass
class Rig:
    """The chaos rig: its own server, the sandbox over HTTP, the scripts' environment."""

    home: Path
    world: World
    sandbox: Sandbox
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    children: list[subprocess.Popen] = field(default_factory=list)

    def script(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bin" / name), *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children.append(process)
        return process

    def run(self, name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "bin" / name), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def store(self) -> Any:
        return jobstore.open_store(Settings(pool_size=2), url=self.url)

    def enqueue_local(self, *prs: int) -> str:
        store = self.store()
        try:
            spec = JobSpec.create("pr-details", REPO, pr_numbers=list(prs))
            return str(store.enqueue(spec, route=Route("local", "explicit", "chaos")).job_id)
        finally:
            store.close()

    def status(self, job_id: str) -> str:
        return self.sql("SELECT status FROM job_heads WHERE job_id = %s", job_id) or "missing"

    def sql(self, query: str, *params: Any) -> Any:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(query, params)
            row = cursor.fetchone() if cursor.description else None
            return row[0] if row else None

    def until(self, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return True
            except psycopg.Error:
                pass  # the database is what this scenario disturbs
            time.sleep(0.2)
        return False

    def stop_children(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def clean(err: str) -> bool:
    return "Traceback" not in err


def finish(process: subprocess.Popen) -> str:
    """Stops a worker the way its user would (SIGTERM) and returns what it said."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def restart_under_an_idle_worker(rig: Rig) -> tuple[bool, str]:
    worker = rig.script("run-job", "--lane", "local", "--watch", "--poll", "0.2")
    first = rig.enqueue_local(1)
    if not rig.until(lambda: rig.status(first) == "completed"):
        return False, f"the first job is {rig.status(first)}"
    Server(rig.home).stop()
    time.sleep(2)  # the worker is idle and its database is gone
    Server(rig.home).start()
    job = rig.enqueue_local(2)
    done = rig.until(lambda: rig.status(job) == "completed")
    alive = worker.poll() is None
    err = finish(worker)
    held = done and alive and clean(err)
    return held, f"job after the restart: {rig.status(job)}; worker alive: {alive}"


def connections_terminated(rig: Rig) -> tuple[bool, str]:
    worker = rig.script("run-job", "--lane", "local", "--watch", "--poll", "0.2")
    first = rig.enqueue_local(3)
    rig.until(lambda: rig.status(first) == "completed")
    killed = rig.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    job = rig.enqueue_local(4)
    done = rig.until(lambda: rig.status(job) == "completed")
    err = finish(worker)
    return done and clean(err), f"{killed} backends terminated; next job {rig.status(job)}"


def read_only_mid_job(rig: Rig) -> tuple[bool, str]:
    rig.sandbox.options.latency = 0.05
    worker = rig.script("run-job", "--lane", "local", "--watch", "--poll", "0.2")
    store = rig.store()
    spec = JobSpec.create("historical-sync", REPO, days=3650, trigger="backfill")
    job = str(store.enqueue(spec, route=Route("local", "explicit", "chaos")).job_id)
    store.close()
    rig.until(lambda: rig.status(job) == "running")
    name = conninfo_to_dict(rig.url).get("dbname") or "postgres"
    rig.sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    rig.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        name,
    )
    time.sleep(3)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    done = rig.until(lambda: rig.status(job) == "completed", timeout=120)
    rig.sandbox.options.latency = 0.0
    err = finish(worker)
    rows = rig.sql(
        "SELECT count(*) FROM pull_requests p JOIN repositories r ON r.id = p.repository_id "
        "WHERE r.full_name = %s",
        REPO,
    )
    exact = rows == PULLS
    held = done and exact and clean(err)
    detail = f"job {rig.status(job)}; {rows} of {PULLS} pull requests stored once"
    if not held:
        last = rig.sql("SELECT last_error FROM capture_jobs WHERE job_id = %s", job)
        detail += f"; last error: {str(last)[:160]}; worker said: {err.strip()[-300:]}"
    return held, detail


def github_refuses(rig: Rig) -> tuple[bool, str]:
    rig.sandbox.faults.add("graphql:422:50", "rest:422:50")
    job = rig.enqueue_local(5)
    done = rig.run("run-job", "--job-id", job)
    rig.sandbox.faults.clear()
    rig.run("jobs", "project")
    error = rig.sql("SELECT last_error FROM capture_jobs WHERE job_id = %s", job) or ""
    held = done.returncode == 1 and "HTTP 422" in error and clean(done.stderr)
    return held, f"exit {done.returncode}: {error[:80]}"


def revoked_token(rig: Rig) -> tuple[bool, str]:
    jobs = [rig.enqueue_local(n) for n in (6, 7, 8)]
    refused = rig.run("run-job", "--lane", "local", GITHUB_TOKEN="revoked")
    untouched = all(rig.status(j) == "routed" for j in jobs)
    rig.run("run-job", "--lane", "local")
    done = all(rig.status(j) == "completed" for j in jobs)
    leaked = "revoked" in refused.stdout + refused.stderr.replace("GitHub refused", "")
    held = untouched and done and not leaked and clean(refused.stderr)
    return held, f"queue untouched with a refused token: {untouched}; then done: {done}"


def sigterm_mid_job(rig: Rig) -> tuple[bool, str]:
    rig.sandbox.options.latency = 0.2
    store = rig.store()
    spec = JobSpec.create("historical-sync", REPO, days=3649, trigger="backfill")
    job = str(store.enqueue(spec, route=Route("local", "explicit", "chaos")).job_id)
    store.close()
    process = rig.script("run-job", "--job-id", job, CAPTURE_BATCH_SIZE="5")
    rig.until(lambda: rig.status(job) == "running")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    rig.sandbox.options.latency = 0.0
    released = rig.status(job)
    time.sleep(2.5)  # the retry is due after JOBSTORE_RETRY_MAX_SECONDS
    again = rig.run("run-job", "--lane", "local")
    held = process.returncode == 143 and released == "retry_scheduled" and clean(err)
    held = held and rig.until(lambda: rig.status(job) == "completed", timeout=5)
    return held, f"exit {process.returncode}, left {released}, then {rig.status(job)} " + (
        "" if again.returncode == 0 else again.stderr[-100:]
    )


def guards(rig: Rig) -> tuple[bool, str]:
    before = rig.sql("SELECT count(*) FROM jobs_events")
    past = rig.run("jobs", "sweep", "--now", "2020-01-01")
    future = rig.run(
        "enqueue", "pr-reviews", "--repo", REPO, "--since", "2098-01-01", "--until", "2099-01-01"
    )
    after = rig.sql("SELECT count(*) FROM jobs_events")
    held = (past.returncode, future.returncode, after) == (2, 2, before)
    codes = f"exit {past.returncode} and {future.returncode}"
    return held, f"a sweep into the past, a future window: {codes}; nothing written"


def replay_is_idempotent(rig: Rig) -> tuple[bool, str]:
    rig.sandbox.faults.add("graphql:422:50", "rest:422:50")
    job = rig.enqueue_local(9)
    rig.run("run-job", "--job-id", job)
    rig.sandbox.faults.clear()
    first = json.loads(rig.run("jobs", "retry", "--error", "HTTP 422", "--json").stdout)
    second = json.loads(rig.run("jobs", "retry", "--error", "HTTP 422", "--json").stdout)
    rig.run("jobs", "sweep")
    rig.run("run-job", "--lane", "local")
    held = job in first["retried"] and second["retried"] == [] and rig.status(job) == "completed"
    counts = f"{len(first['retried'])}, then {len(second['retried'])}"
    return held, f"retried {counts}; job {rig.status(job)}"


SCENARIOS: dict[str, Callable[[Rig], tuple[bool, str]]] = {
    "postgres restarted under an idle worker": restart_under_an_idle_worker,
    "every connection terminated": connections_terminated,
    "database read-only for 3 s mid-job": read_only_mid_job,
    "GitHub answers 422": github_refuses,
    "a revoked token": revoked_token,
    "SIGTERM mid-job": sigterm_mid_job,
    "the event log guarded": guards,
    "a replay after an incident": replay_is_idempotent,
}


@click.command(cls=Command)
@version_option
@log_options
@click.option("--only", multiple=True, type=click.Choice(sorted(SCENARIOS)))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def chaos(only: tuple[str, ...], as_json: bool) -> None:
    """Drive faults through the scripts as real processes; say which held. Exit 1 if any
    did not."""
    world = World(seed=11, now=datetime.now(UTC))
    world.add_repository(REPO, PULLS, 365)
    sandbox = Sandbox(world, Options(tokens={DEFAULT_TOKEN: 1_000_000}))
    served = sandbox.serve()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        home = Path(tmp) / "jobstore"
        rig = Rig(home, world, sandbox)
        rig.url = Server(home).start()
        jobstore.migrate(rig.url)
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "INNGEST"))}
        rig.env = {
            **keep,
            **script_env(served.url, DEFAULT_TOKEN, DEFAULT_EVENT_KEY, "acme/ops"),
            "DATABASE_URL": rig.url,
            "JOBSTORE_RETRY_BASE_SECONDS": "1",
            "JOBSTORE_RETRY_MAX_SECONDS": "2",
        }
        results = {}
        try:
            for name, scenario in SCENARIOS.items():
                if only and name not in only:
                    continue
                started = time.monotonic()
                try:
                    held, detail = scenario(rig)
                except Exception as exc:  # a scenario that crashes did not hold; say why
                    held, detail = False, f"{type(exc).__name__}: {exc}"
                finally:
                    rig.stop_children()
                results[name] = {"held": held, "detail": detail, "s": time.monotonic() - started}
                mark = "held" if held else "NOT HELD"
                click.echo(f"{mark:8}  {name:42} {detail}  ({results[name]['s']:.0f}s)")
        finally:
            rig.stop_children()
            Server(home).stop()
            served.stop()
    failed = [n for n, r in results.items() if not r["held"]]
    click.echo(f"{len(results) - len(failed)} of {len(results)} scenarios held")
    if as_json:
        click.echo(json.dumps({"held": len(results) - len(failed), "scenarios": results}))
    raise SystemExit(1 if failed else 0)
