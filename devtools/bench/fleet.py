"""`bin/bench fleet`: a fleet imported at once, scheduled through lanes with real limits.

Every repository is tracked in one go (heavy-tailed: most small, 2% large, 5% with 15
years of history, and one monorepo whose backfill splits into many child jobs). Three
planners and the workflow fallback run a pass each step, each on its own connections,
in threads (the planner lock lets one of them work). The sweeper dispatches through the
sandbox's Inngest Event API and Actions `workflow_dispatch`, exactly as in production.

What the lanes do is simulated on the clock: each has a capacity (runners an account
runs at once, Inngest's concurrent steps); what arrives beyond it waits at the lane (a
dispatch over capacity, counted); an Actions run takes a runner's setup time first, and a
historical-sync run's matrix runs its children four legs at a time. A job's capture runs
for real (run_job against the sandbox and PostgreSQL) at the moment its simulated run
ends. A peer run without the monorepo gives the small repositories' refresh waits to
compare with.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import click
import httpx
import psycopg

import jobstore
from capture.attempt import run_claimed, run_job
from capture.freshness.loop import plan_once
from capture.freshness.registry import Entry, Registry
from capture.freshness.rules import FreshnessSettings
from capture.github.budgets import MemoryBudgets
from capture.github.client import GitHubFactory
from capture.settings import CaptureSettings
from capture.storage import Storage
from devtools.bench.freshness import TOKEN, Clock
from devtools.bench.store import percentile, scratch_database
from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox, World
from devtools.sandbox.activity import Activity, heavy_tailed_rates
from jobstore import db
from jobstore.dispatcher import Dispatcher
from jobstore.domain import Job
from jobstore.lanes.github_actions import plan_matrix
from jobstore.secret import Secret
from jobstore.settings import LaneSettings, Settings, load
from jobstore.sweeper import sweep

T0 = datetime(2026, 6, 1, tzinfo=UTC)
OPS = "acme/ops"
INPUTS = {"job_id": {"required": True}, "attempt": {"required": True}}
RUN_NAME = "capture ${{ inputs.job_id }} #${{ inputs.attempt }}"
MONOREPO = "giant/monorepo"
SETUP = {"github_actions": 45.0, "inngest": 1.0}  # seconds before a job's own work starts
LEGS = 4  # the historical-sync workflow's max-parallel
SMALL = 30  # pull requests: a small repository, for the wait comparison
PLANNERS = 4  # three planners and the plan.yml fallback
SWEEP = timedelta(seconds=30)  # `bin/jobs sweep --forever`'s default interval


@dataclass
class Unit:
    """One piece of work a lane runs: a job's attempt, in a run (Actions) or an event."""

    job_id: UUID
    attempt: int | None
    arrived: datetime
    run: int | None = None  # the Actions run it belongs to (legs share their run's)
    leg: bool = False
    started: datetime | None = None
    ends: datetime | None = None
    job: Job | None = None  # the attempt its runner claimed when it started


@dataclass
class Lane:
    """A lane's runners: `capacity` at once; what arrives beyond them waits here."""

    name: str
    capacity: int
    queue: deque[Unit] = field(default_factory=deque)
    running: list[Unit] = field(default_factory=list)
    over_capacity: int = 0  # arrivals the lane had to queue: the dispatcher sent too many
    peak: int = 0

    def arrive(self, unit: Unit) -> None:
        if len(self.running) + len(self.queue) >= self.capacity:
            self.over_capacity += 1
        self.queue.append(unit)


class Answering(httpx.BaseTransport):
    """The sandbox's transport, timing how long it takes to answer, per thread: a planner
    pass's own time is its time less GitHub's (here, the in-process sandbox's)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.spent = inner, threading.local()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            return self.inner.handle_request(request)
        finally:
            self.spent.s = self.seconds() + time.perf_counter() - started

    def seconds(self) -> float:
        return getattr(self.spent, "s", 0.0)


class Fleet:
    """The database, the sandbox on the clock, the planners, the sweeper and the lanes."""

    def __init__(
        self, url: str, world: World, clock: Clock, sizes: dict[str, int], capacity: dict
    ) -> None:
        self.url, self.clock, self.sizes = url, clock, sizes
        self.sandbox = Sandbox(
            world, Options(tokens={TOKEN: 10**9, DEFAULT_TOKEN: 10**9}), clock=clock
        )
        for file in ("capture-job.yml", "historical-sync.yml"):
            self.sandbox.register_workflow(OPS, file, INPUTS, run_name=RUN_NAME)
        lanes = LaneSettings(
            inngest_event_key=Secret(DEFAULT_EVENT_KEY),
            inngest_event_api="http://sandbox.invalid",
            github_token=Secret(DEFAULT_TOKEN),
            github_api_url="http://sandbox.invalid",
            actions_repository=OPS,
        )
        settings = Settings(pool_size=12, lanes=lanes, capacities=dict(capacity))
        self.store = jobstore.open_store(settings, url=url)
        self.storage = Storage(self.store.database("storage"))
        self.http = httpx.Client(transport=self.sandbox.transport())
        self.dispatcher = Dispatcher.open(self.store, self.http)
        self.capture = CaptureSettings(
            token=Secret(TOKEN),
            api_url="http://sandbox.invalid",
            graphql_url="http://sandbox.invalid/graphql",
            max_items=25,
        )
        self.answering = Answering(self.sandbox.transport())
        self.github = GitHubFactory(
            self.capture,
            MemoryBudgets(),
            transport=self.answering,
            sleep=self.wait,
            now=clock,
        )
        self.planners = [
            (Registry(self.store.database(f"planner-{i}")), self.github.github(realtime=False))
            for i in range(PLANNERS)
        ]
        self.lanes = {name: Lane(name, capacity[name]) for name in ("inngest", "github_actions")}
        self.seen_events = 0
        self.seen_runs = 0  # runs looked at (the sandbox's, in the order dispatched)
        self.run_legs: dict[int, int] = {}  # run id -> legs running
        self.waits: list[tuple[str, str, datetime, float]] = []  # (repo, type, created, s)
        self.pass_ms: list[float] = []
        self.pass_own_ms: list[float] = []  # less the time GitHub (the sandbox) took
        self.redispatched = 0
        self.refreshes = 0
        self.refresh_runs = 0
        self.parent_looks = 0  # runs of a parent looking at its child jobs
        self.batches: list[tuple[str, int]] = []  # (rule, refreshes) of each refresh run
        self.failed = 0
        self.lock = threading.Lock()

    def wait(self, seconds: float) -> None:
        """A client waiting out GitHub's pace: the simulated time passes (a no-op sleep on
        a clock that stood still spun forever once a pass asked more than a minute's pace)."""
        with self.lock:
            self.clock.now += timedelta(seconds=seconds)

    # planners -----------------------------------------------------------------------------
    def plan(self, freshness: FreshnessSettings) -> None:
        """Every planner's pass at once, in threads: one works, the others skip."""
        now = self.clock()

        def one(registry: Registry, gh: Any) -> None:
            started, answering = time.perf_counter(), self.answering.seconds()
            report = plan_once(registry, self.dispatcher, gh, now, freshness)
            if not report.skipped:
                took = time.perf_counter() - started
                with self.lock:
                    self.pass_ms.append(took * 1000)
                    own = took - (self.answering.seconds() - answering)
                    self.pass_own_ms.append(own * 1000)

        threads = [threading.Thread(target=one, args=p) for p in self.planners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def sweep(self) -> None:
        report = sweep(self.dispatcher, self.clock())
        self.redispatched += len(report.undelivered)

    # lanes --------------------------------------------------------------------------------
    def arrivals(self) -> None:
        """What the dispatcher sent since the last look, at its lane."""
        now = self.clock()
        events = self.sandbox.inngest.events
        for event in events[self.seen_events :]:
            data = event.get("data") or {}
            self.lanes["inngest"].arrive(
                Unit(UUID(data["job_id"]), int(data["attempt"]), arrived=now)
            )
        self.seen_events = len(events)
        runs = self.sandbox.actions.runs  # never shrinks: the new ones are its last
        for run_id, run in list(itertools.islice(runs.items(), self.seen_runs, None)):
            self.seen_runs += 1
            job_id = UUID(run.inputs["job_id"])
            unit = Unit(job_id, int(run.inputs["attempt"]), arrived=now, run=run_id)
            job = self.store.get(job_id)
            if run.workflow == "capture-job.yml" and job.job_type == "repository-refresh":
                self.refresh_runs += 1
                riders = self.riders(unit)
                self.batches.append((job.rule or "", 1 + len(riders)))
            self.lanes["github_actions"].arrive(unit)

    def work(self, job_id: UUID, leg: bool = False) -> float:
        """Seconds a job's own work takes (after its runner's setup): a page of an index
        pass a second, a pull request captured whole 0.3 s; a parent waking to look at
        its children a few seconds."""
        job = self.store.get(job_id)
        if (job.cursor or "").startswith("children"):
            return 3.0
        pulls = len(job.pr_numbers) or self.sizes.get(job.repository, 10)
        if job.job_type != "historical-sync" and not leg:
            return 5.0
        if not job.pr_numbers and pulls > self.capture.max_items:  # index, then children
            return 3.0 + -(-pulls // 100)
        return 3.0 + 0.3 * pulls

    def riders(self, unit: Unit) -> list[tuple[UUID, int]]:
        if unit.leg or unit.run is None or unit.attempt is None:
            return []
        return self.store.heads.batch_members(unit.job_id, unit.attempt)

    def duration(self, lane: str, unit: Unit) -> float:
        riders = sum(self.work(member) for member, _ in self.riders(unit))
        return SETUP[lane] + self.work(unit.job_id, unit.leg) + riders

    def step_lanes(self, until: datetime) -> None:
        """Runs the lanes up to `until`: starts what their capacity allows, ends what is
        due (its capture runs then, for real), in time order."""
        while True:
            for lane in self.lanes.values():
                self.start(lane, self.clock())
            running = [(u.ends, lane, u) for lane in self.lanes.values() for u in lane.running]
            due = [r for r in running if r[0] is not None and r[0] <= until]
            if not due:
                break
            ends, lane, unit = min(due, key=lambda r: r[0])
            self.clock.now = max(self.clock.now, ends)
            lane.running.remove(unit)
            if unit.leg and unit.run is not None:
                self.run_legs[unit.run] -= 1
            self.finish(lane, unit)
        self.clock.now = max(self.clock.now, until)  # a wait may have passed it

    def start(self, lane: Lane, now: datetime) -> None:
        """Starts what the lane's runners have room for; a runner claims its job's attempt
        as it starts (a job whose attempt moved on meanwhile is not run: the runner ends)."""
        waiting = list(lane.queue)
        lane.queue.clear()
        for unit in waiting:
            full = len(lane.running) >= lane.capacity
            legs_full = unit.leg and self.run_legs.get(unit.run or 0, 0) >= LEGS
            if full or legs_full:
                lane.queue.append(unit)
                continue
            claim = self.store.claim(
                unit.job_id, f"{lane.name}-runner", now, attempt=unit.attempt, lane=lane.name
            )
            if not claim.won:
                continue
            unit.job = claim.job or self.store.get(unit.job_id)
            unit.started = now
            self.parent_looks += (unit.job.cursor or "").startswith("children")
            unit.ends = now + timedelta(seconds=self.duration(lane.name, unit))
            lane.running.append(unit)
            lane.peak = max(lane.peak, len(lane.running))
            if unit.leg and unit.run is not None:
                self.run_legs[unit.run] = self.run_legs.get(unit.run, 0) + 1
            waited = (now - unit.job.created_on).total_seconds()
            self.waits.append((unit.job.repository, unit.job.job_type, unit.job.created_on, waited))

    def finish(self, lane: Lane, unit: Unit) -> None:
        """The run's work, now that its simulated time is over: the real capture."""
        assert unit.job is not None
        result = run_claimed(
            self.store,
            unit.job,
            storage=self.storage,
            settings=self.capture,
            github=self.github,
            now=self.clock,
        )
        self.failed += result.outcome == "failed"
        job = self.store.get(unit.job_id)
        if job.job_type == "repository-refresh" and result.outcome == "completed":
            self.refreshes += 1
        for member, attempt in self.riders(unit):  # the run's batch, one after another
            ridden = run_job(
                self.store,
                member,
                worker=f"{lane.name}-runner (batch of {unit.job_id})",
                storage=self.storage,
                settings=self.capture,
                github=self.github,
                lane=lane.name,
                attempt=attempt,
                now=self.clock,
            )
            self.failed += ridden.outcome == "failed"
            self.refreshes += ridden.outcome == "completed"
        if lane.name == "github_actions" and unit.run is not None and not unit.leg:
            ref = f"{unit.run} https://github.com/{OPS}/actions/runs/{unit.run}"
            for child in plan_matrix(self.store, job, ref, self.clock()):
                lane.arrive(Unit(child, None, self.clock(), run=unit.run, leg=True))

    def close(self) -> None:
        self.github.close()
        self.http.close()
        self.store.close()


def build(
    repos: int, seed: int, monorepo: int, lean: bool = True
) -> tuple[World, dict[str, int], dict[str, str]]:
    """Heavy-tailed repositories: most small, 2% large, 5% with 15 years of history.
    `lean`: each pull request with little inside (scheduling is measured, not parsing)."""
    rng = random.Random(seed)
    world = World(seed=seed, now=T0, lean=lean)
    sizes: dict[str, int] = {}
    tiers: dict[str, str] = {}
    for i in range(repos):
        name = f"org{i % 97}/repo{i}"
        large, ancient = rng.random() < 0.02, rng.random() < 0.05
        pulls = rng.randint(150, 300) if large else rng.randint(2, 25)
        world.add_repository(name, pulls, 15 * 365 if ancient else 365)
        sizes[name] = pulls
        tiers[name] = "hot" if i % 20 == 0 else "warm" if i % 4 == 0 else "cold"
    if monorepo:
        world.add_repository(MONOREPO, monorepo, 5 * 365)
        sizes[MONOREPO], tiers[MONOREPO] = monorepo, "warm"
    return world, sizes, tiers


def p95(values: list[float]) -> float:
    return percentile(values, 0.95) if values else 0.0


def simulate(
    url: str,
    repos: int,
    hours: int,
    step: timedelta,
    seed: int,
    monorepo: int,
    capacity: dict[str, int],
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    world, sizes, tiers = build(repos, seed, monorepo)
    clock = Clock(T0)
    fleet = Fleet(url, world, clock, sizes, capacity)
    freshness = replace(
        FreshnessSettings(),
        fast_lane="inngest",
        bulk_lane="github_actions",
        refresh_lane=None,
        reserve=0,
    )
    names = list(tiers)
    rates = heavy_tailed_rates([n for n in names if n != MONOREPO], repos * 6.0, seed=seed)
    activity = Activity(world, rates, T0, seed=seed)
    try:
        fleet.planners[0][0].track([Entry(n, tiers[n]) for n in names], clock())
        started = time.perf_counter()
        end = T0 + timedelta(hours=hours)
        bootstrap_done: datetime | None = None
        mono: tuple[datetime, datetime | None] | None = None
        samples: list[float] = []
        next_sample = T0 + timedelta(hours=1)
        registry = fleet.planners[0][0]
        while clock.now < end:
            activity.advance(clock.now)
            fleet.plan(freshness)
            until = min(end, clock.now + step)
            while clock.now < until:  # the sweeper runs every SWEEP seconds
                fleet.sweep()
                fleet.arrivals()
                fleet.step_lanes(min(until, clock.now + SWEEP))
            progress = registry.bootstrap_progress()
            if bootstrap_done is None and progress["done"] == progress["tracked"]:
                bootstrap_done = clock.now
            if monorepo and (mono is None or mono[1] is None):  # until it ended
                mono = monorepo_backfill(url)
            if clock.now >= next_sample:
                next_sample += timedelta(hours=1)
                if bootstrap_done is not None:
                    samples.append(within_target(url, clock.now))
        wall = time.perf_counter() - started
        progress = registry.bootstrap_progress()
        with psycopg.connect(url) as conn:
            backfills = conn.execute(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM job_heads "
                "WHERE job_type = 'historical-sync' AND parent_id IS NULL GROUP BY repository) c"
            ).fetchone()[0]
        busy = window or (
            (mono[0], mono[1] or end) if mono is not None and mono[0] is not None else (T0, end)
        )
        small_waits = [
            waited
            for repo, job_type, created, waited in fleet.waits
            if job_type in ("repository-refresh", "historical-sync")
            and sizes.get(repo, 0) < SMALL
            and busy[0] <= created <= busy[1]
        ]
        return {
            "repos": len(names),
            "hours": hours,
            "capacity": capacity,
            "backfills_per_repo_max": backfills,
            "history_complete": round(progress["done"] / max(progress["tracked"], 1), 4),
            "bootstrap_hours": (
                round((bootstrap_done - T0).total_seconds() / 3600, 2) if bootstrap_done else None
            ),
            "bootstrap_failed": progress["failed"],
            "dispatches_over_capacity": sum(lane.over_capacity for lane in fleet.lanes.values()),
            "lane_peak": {name: lane.peak for name, lane in fleet.lanes.items()},
            "over_capacity_by_lane": {n: lane.over_capacity for n, lane in fleet.lanes.items()},
            "redispatches_from_queueing": fleet.redispatched,
            "refreshes": fleet.refreshes,
            "actions_refresh_runs": fleet.refresh_runs,
            "actions_refreshes_per_run": round(
                sum(n for _, n in fleet.batches) / max(len(fleet.batches), 1), 1
            ),
            "actions_refresh_runs_by_rule": dict(Counter(rule for rule, _ in fleet.batches)),
            "actions_runs_per_1000_refreshes": round(
                1000 * fleet.refresh_runs / max(fleet.refreshes, 1), 1
            ),
            "parent_look_runs": fleet.parent_looks,
            "small_repo_wait_p95_s": round(p95(small_waits), 1),
            "small_repo_waits": len(small_waits),
            "window": [busy[0].isoformat(), busy[1].isoformat()],
            "slo_attainment": round(statistics.mean(samples), 4) if samples else None,
            "slo_samples": len(samples),
            "planner_passes": len(fleet.pass_ms),
            "planner_pass_p95_ms": round(p95(fleet.pass_ms), 1),
            "planner_pass_own_p95_ms": round(p95(fleet.pass_own_ms), 1),
            "failed_attempts": fleet.failed,
            "wall_s": round(wall, 1),
        }
    finally:
        fleet.close()


def within_target(url: str, at: datetime) -> float:
    """The share of tracked repositories whose data is within their tier's target at
    `at` (the simulated time; the view's own `breached` reads the real clock)."""
    with psycopg.connect(url) as conn:
        tracked, late = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE fresh_as_of IS NULL "
            "OR %s - fresh_as_of > target) FROM repo_freshness",
            (at,),
        ).fetchone()
    return 1 - late / max(tracked, 1)


def monorepo_backfill(url: str) -> tuple[datetime, datetime | None] | None:
    """When the monorepo's history backfill was created, and when it ended (None: not
    yet), from its job's head."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT created_at, status, last_event_at FROM job_heads WHERE repository = %s "
            "AND job_type = 'historical-sync' AND parent_id IS NULL ORDER BY created_at LIMIT 1",
            (MONOREPO,),
        ).fetchone()
    if row is None:
        return None
    created, status, last = row
    return created, (last if status in ("completed", "failed") else None)


@click.command()
@click.option("--repos", default=300, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--hours", default=12, show_default=True, type=click.IntRange(1, 24 * 14))
@click.option("--step-minutes", default=2.0, show_default=True, type=click.FloatRange(0.5, 60))
@click.option(
    "--monorepo",
    default=3000,
    show_default=True,
    type=click.IntRange(0, 200_000),
    help="Pull requests of the monorepo (0: none).",
)
@click.option("--actions-capacity", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--inngest-capacity", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--peer/--no-peer", default=True, help="The run without the monorepo.")
@click.option("--seed", default=3, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def fleet(
    repos: int,
    hours: int,
    step_minutes: float,
    monorepo: int,
    actions_capacity: int,
    inngest_capacity: int,
    peer: bool,
    seed: int,
    as_json: bool,
) -> None:
    """A fleet imported at once: bootstrap pacing, lanes kept within capacity, fairness to
    small repositories while a monorepo backfills, planners racing, history completed."""
    server = db.database_url(load())
    capacity = {"github_actions": actions_capacity, "inngest": inngest_capacity}
    step = timedelta(minutes=step_minutes)
    with scratch_database(server, "fleet") as url:
        jobstore.migrate(url)
        result = simulate(url, repos, hours, step, seed, monorepo, capacity)
    result["small_repo_wait_p95_ratio"] = None  # without a peer run: not measured
    if peer and monorepo:
        start, end = (datetime.fromisoformat(t) for t in result["window"])
        # the peer runs only as long as the waits it is compared with: to the window's end
        until = min(hours, 1 + int((end - T0).total_seconds() // 3600))
        with scratch_database(server, "fleet-peer") as url:
            jobstore.migrate(url)
            alone = simulate(url, repos, until, step, seed, 0, capacity, (start, end))
        result["peer_hours"] = until
        result["small_repo_wait_p95_s_without_monorepo"] = alone["small_repo_wait_p95_s"]
        result["small_repo_wait_p95_ratio"] = round(
            result["small_repo_wait_p95_s"] / max(alone["small_repo_wait_p95_s"], 1.0), 2
        )
        result["peer_wall_s"] = alone["wall_s"]
    rows = [
        ("repositories (monorepo PRs)", f"{result['repos']} ({monorepo})"),
        ("simulated hours", hours),
        ("lane capacity (actions / inngest)", f"{actions_capacity} / {inngest_capacity}"),
        ("backfills per repository, most", result["backfills_per_repo_max"]),
        ("history complete (share)", result["history_complete"]),
        ("bootstrap hours (until all done)", result["bootstrap_hours"]),
        ("dispatches over capacity", result["dispatches_over_capacity"]),
        ("lane peak (actions / inngest)", json.dumps(result["lane_peak"])),
        ("re-dispatches from queueing", result["redispatches_from_queueing"]),
        (
            "refreshes, their Actions runs",
            f"{result['refreshes']}, {result['actions_refresh_runs']}",
        ),
        ("Actions runs per 1000 refreshes", result["actions_runs_per_1000_refreshes"]),
        ("small repos' job wait p95 s (monorepo busy)", result["small_repo_wait_p95_s"]),
        ("... against no monorepo (ratio)", result.get("small_repo_wait_p95_ratio")),
        ("SLO attainment after bootstrap", result["slo_attainment"]),
        ("planner pass p95 ms", result["planner_pass_p95_ms"]),
        ("... less GitHub's (the sandbox's) answers", result["planner_pass_own_p95_ms"]),
        ("wall s", result["wall_s"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(result))
