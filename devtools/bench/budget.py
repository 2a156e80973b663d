"""`bin/bench budget`: many concurrent jobs over simulated hours on a pool of credentials
(GitHub App installations and two users' personal tokens) drawing from one shared
budget ledger, against the same load on a single token, and on the same pool with a
budget in each worker's memory (what capture did before: every worker believes it has
the whole hour). One long job meanwhile outlives several installation tokens.

Time is simulated (a clock running `--speed` times faster than the wall), and every
budget is scaled down by `--scale` with it (GitHub's 5,000 points an hour become 100 at
the default 50), so that the load this machine can offer in a minute of wall time is
the load a fleet offers GitHub in hours. Counts and ratios are what to read.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import jobstore
from capture.attempt import run_job
from capture.github.budgets import MemoryBudgets
from capture.github.client import GitHubFactory
from capture.github.ledger import PostgresBudgets
from capture.settings import CaptureSettings
from capture.storage import Storage
from devtools.bench.store import scratch_database
from devtools.sandbox import Options, Sandbox, World
from devtools.sandbox.apps import Installation
from jobstore import db
from jobstore.db import Database
from jobstore.routing import Route
from jobstore.secret import Secret
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec

T0 = datetime(2026, 7, 1, tzinfo=UTC)
BASE = "http://sandbox.invalid"
APP_ID = 77
OWNERS = ("north", "south", "east")  # one installation each
LOCAL = Route("local", "explicit", "bench")
LONG_REQUESTS = 75  # what the long job sends, about: it is slowed to last --long-hours


class SimClock:
    """Simulated time, `speed` times the wall clock, shared by every thread."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.started = time.monotonic()

    def __call__(self) -> datetime:
        return T0 + timedelta(seconds=(time.monotonic() - self.started) * self.speed)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)


class Slow(httpx.BaseTransport):
    """Each request of the long job takes `seconds` of simulated time; the tokens it was
    sent with are counted (a new installation token means the old one was renewed)."""

    def __init__(self, inner: httpx.BaseTransport, clock: SimClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds
        self.tokens: list[str] = []  # installation tokens, in the order first used

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.sleep(self.seconds)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token.startswith("ghs_") and token not in self.tokens:
            self.tokens.append(token)
        return self.inner.handle_request(request)

    def renewals(self, sandbox: Sandbox) -> int:
        """How often a token the job used was followed by a newer one of the same
        installation (it expired, or was renewed just before)."""
        per_installation = Counter(sandbox.apps.tokens[t][0] for t in self.tokens)
        return sum(n - 1 for n in per_installation.values())


@dataclass
class Run:
    label: str
    completed: int = 0
    rescheduled: int = 0
    failed: int = 0
    long_job: str = ""
    long_hours: float = 0.0
    token_renewals: int = 0


def private_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return pem, public


def world_for(jobs: int) -> tuple[World, list[str]]:
    world = World(seed=21, now=T0)
    names = []
    for i in range(jobs):
        name = f"{OWNERS[i % len(OWNERS)]}/repo{i}"
        world.add_repository(name, 80, 300)
        names.append(name)
    world.add_repository("north/long", 260, 300)
    return world, names


def simulate(
    url: str, mode: str, jobs: int, hours: float, speed: float, scale: int, long_hours: float
) -> tuple[Run, Sandbox]:
    """One run: `pool` (shared ledger), `memory` (the pool, each worker on its own), or
    `single` (one personal token, shared ledger)."""
    world, names = world_for(jobs)
    clock = SimClock(speed)
    limit = 5000 // scale
    pem, public = private_key()
    users = {"ghp_ann1": "ann", "ghp_ann2": "ann", "ghp_ben1": "ben", "ghp_ben2": "ben"}
    options = Options(
        tokens=dict.fromkeys(users, limit),
        users=users,
        per_minute={"graphql": 2000 // scale, "core": 900 // scale},
    )
    sandbox = Sandbox(world, options, clock=clock)
    sandbox.apps.register(APP_ID, public)
    for i, owner in enumerate(OWNERS):
        sandbox.apps.install(Installation(100 + i, APP_ID, owner, limit))
    if mode == "single":
        settings = CaptureSettings(
            api_url=BASE, graphql_url=f"{BASE}/graphql", token=Secret("ghp_ann1"), reserve=0
        )
    else:
        settings = CaptureSettings(
            api_url=BASE,
            graphql_url=f"{BASE}/graphql",
            tokens=tuple(Secret(t) for t in users),
            app_id=APP_ID,
            app_key=Secret(pem),
            installation_ids=(100, 101, 102),
            reserve=0,
        )
    store = jobstore.open_store(Settings(pool_size=8), url=url)
    run = Run(mode)
    lock = threading.Lock()
    end = T0 + timedelta(hours=hours)

    def github_maker(budgets: Any, transport: httpx.BaseTransport) -> GitHubFactory:
        """A worker process's GitHub (one client, one pool), its pace scaled down."""
        factory = GitHubFactory(
            settings, budgets, transport=transport, sleep=clock.sleep, now=clock
        )
        factory.pool.pace = {"graphql": 1800 // scale, "core": 800 // scale}
        return factory

    def worker(index: int) -> None:
        rng = random.Random(index)
        # Each worker is a process of its own: its own connections.
        own = Database(url, f"worker-{index}", size=1)
        budgets = MemoryBudgets() if mode == "memory" else PostgresBudgets(own)
        storage = Storage(own)
        github = github_maker(budgets, sandbox.transport())
        repo = names[index]
        try:
            while clock() < end:
                numbers = sorted(rng.sample(range(1, 81), 25))
                spec = JobSpec.create(
                    "pr-details", repo, pr_numbers=numbers, dedupe_key=f"{repo}:{rng.random()}"
                )
                job_id = store.enqueue(spec, clock(), route=LOCAL).job_id
                while clock() < end:
                    result = run_job(
                        store,
                        job_id,
                        worker=f"w{index}",
                        storage=storage,
                        settings=settings,
                        github=github,
                        now=clock,
                    )
                    with lock:
                        if result.outcome == "completed":
                            run.completed += 1
                        elif result.outcome == "rescheduled":
                            run.rescheduled += 1
                        else:
                            run.failed += 1
                    if result.outcome != "rescheduled":
                        break
                    job = store.get(job_id)
                    clock.sleep((job.not_before - clock()).total_seconds())
                    store.route(job_id, LOCAL, clock())
                clock.sleep(rng.uniform(5, 40))  # think time between jobs
        finally:
            github.close()
            own.close()

    long_settings = replace(settings, batch_size=10)  # about LONG_REQUESTS requests

    def long_job() -> None:
        own = Database(url, "long-job", size=1)
        budgets = PostgresBudgets(own) if mode != "memory" else MemoryBudgets()
        storage = Storage(own)
        slow = Slow(sandbox.transport(), clock, long_hours * 3600 / LONG_REQUESTS)
        github = github_maker(budgets, slow)
        spec = JobSpec.create("historical-sync", "north/long", days=3650, trigger="backfill")
        job_id = store.enqueue(spec, clock(), route=LOCAL).job_id
        outcome = "rescheduled"
        started = clock()
        while outcome == "rescheduled" and clock() < T0 + timedelta(hours=long_hours + 2):
            result = run_job(
                store,
                job_id,
                worker="long",
                storage=storage,
                settings=long_settings,
                github=github,
                now=clock,
            )
            outcome = result.outcome
            if outcome == "rescheduled":
                clock.sleep((store.get(job_id).not_before - clock()).total_seconds())
                store.route(job_id, LOCAL, clock())
        run.long_job = outcome
        run.long_hours = (clock() - started).total_seconds() / 3600
        run.token_renewals = slow.renewals(sandbox)
        github.close()
        own.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(jobs)]
    if mode == "pool":
        threads.append(threading.Thread(target=long_job))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    return run, sandbox


def measured(run: Run, sandbox: Sandbox) -> dict[str, Any]:
    entries = sandbox.ledger.entries
    primary = sum(
        1
        for e in entries
        if e.error == "RATE_LIMITED" or (e.status == 403 and "API rate limit" in str(e.extra))
    )
    secondary = sum(1 for e in entries if e.status == 403 and e.error == "")
    points = Counter()
    for e in entries:
        if e.extra.get("bucket"):
            points[e.extra["bucket"]] += e.points
    used = [p for p in points.values() if p] or [0]
    return {
        "completed": run.completed,
        "rescheduled": run.rescheduled,
        "failed": run.failed,
        "primary_exhaustions": primary,
        "secondary_hits": secondary,
        "points": sum(points.values()),
        "buckets": dict(sorted(points.items())),
        "credential_balance": round(max(used) / max(min(used), 1), 3),
    }


@click.command()
@click.option("--jobs", default=40, show_default=True, type=click.IntRange(2, 200))
@click.option("--hours", default=2.0, show_default=True, type=click.FloatRange(0.05, 24))
@click.option("--long-hours", default=3.0, show_default=True, type=click.FloatRange(0.05, 24))
@click.option("--speed", default=120.0, show_default=True, type=click.FloatRange(1, 10_000))
@click.option("--scale", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def budget(
    jobs: int, hours: float, long_hours: float, speed: float, scale: int, as_json: bool
) -> None:
    """Concurrent jobs on a pool of credentials with a shared budget ledger, against one
    token and against budgets kept in each worker's memory."""
    server = db.database_url(load())
    results = {}
    for mode in ("pool", "memory", "single"):
        with scratch_database(server, f"budget_{mode}") as url:
            jobstore.migrate(url)
            run, sandbox = simulate(url, mode, jobs, hours, speed, scale, long_hours)
            results[mode] = {
                **measured(run, sandbox),
                "long_job": run.long_job,
                "long_hours": round(run.long_hours, 2),
                "renewals": run.token_renewals,
            }
    pool, single = results["pool"], results["single"]
    summary = {
        "jobs": jobs,
        "hours": hours,
        "scale": scale,
        "primary_exhaustions": pool["primary_exhaustions"],
        "secondary_hits": pool["secondary_hits"],
        "credential_balance": pool["credential_balance"],
        "token_expiries_survived": pool["renewals"] if pool["long_job"] == "completed" else 0,
        "long_job": pool["long_job"],
        "long_job_hours": pool["long_hours"],
        "failed_attempts": pool["failed"],
        "points_pool": pool["points"],
        "points_single": single["points"],
        "points_ratio": round(pool["points"] / max(single["points"], 1), 2),
        "completed_pool": pool["completed"],
        "completed_single": single["completed"],
        "completed_ratio": round(pool["completed"] / max(single["completed"], 1), 2),
        "memory_primary_exhaustions": results["memory"]["primary_exhaustions"],
        "memory_secondary_hits": results["memory"]["secondary_hits"],
        "runs": results,
    }
    head = ("completed", 9), ("rescheduled", 11), ("points", 7), ("primary", 7)
    head += ("secondary", 9), ("balance", 7)
    click.echo(f"{'run':34} " + " ".join(f"{name:>{width}}" for name, width in head))
    for mode, label in (
        ("pool", "pool, shared ledger"),
        ("memory", "pool, budget in each worker"),
        ("single", "one token, shared ledger"),
    ):
        r = results[mode]
        click.echo(
            f"{label:34} {r['completed']:>9} {r['rescheduled']:>11} {r['points']:>7} "
            f"{r['primary_exhaustions']:>7} {r['secondary_hits']:>9} {r['credential_balance']:>7}"
        )
    click.echo(
        f"long job: {pool['long_job']} after {pool['long_hours']} simulated hours, across "
        f"{summary['token_expiries_survived']} installation token renewals; budgets scaled "
        f"1/{scale}, time x{speed:g}"
    )
    if as_json:
        click.echo(json.dumps(summary))
