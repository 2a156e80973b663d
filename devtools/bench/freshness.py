"""`bin/bench freshness`: many tracked repositories kept fresh over simulated hours.

By default 300 repositories for 8 simulated hours (a few minutes of wall time);
`--repos 2000 --hours 24` is the fleet's day the loop was first built to hold.

A sandbox world changes over simulated time (heavy-tailed: a few repositories busy, most
quiet, 2% large; reviews and comments land on pull requests of any age). The planner runs
a pass every step, a local worker runs what it enqueued, and every change the world made
is looked for in the database after each step. Measured: how often each repository was
within its tier's target (hourly samples, from the ground truth of what was stored, not
from the planner's own bookkeeping), how long each change took to be stored, what the
probes cost, and points per hour against a naive peer in the same run that syncs every
repository once per target period.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import psycopg

import jobstore
from capture.attempt import run_job
from capture.freshness.loop import plan_once
from capture.freshness.registry import Entry, Registry
from capture.freshness.rules import FreshnessSettings
from capture.github.budgets import MemoryBudgets
from capture.github.client import GitHubFactory
from capture.settings import CaptureSettings
from capture.storage import Storage
from devtools.bench.store import scratch_database
from devtools.sandbox import Options, Sandbox, World
from devtools.sandbox.activity import Activity, Change, heavy_tailed_rates
from jobstore import db
from jobstore.dispatcher import Dispatcher
from jobstore.secret import Secret
from jobstore.settings import Settings, load

TOKEN = "bench-freshness-token"
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SETTINGS = FreshnessSettings(fast_lane="local", bulk_lane="local", refresh_lane="local")
CHECKS = {
    "review": "SELECT id FROM reviews WHERE id = ANY(%s)",
    "comment": "SELECT id FROM comments WHERE id = ANY(%s)",
}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def build_world(repos: int, seed: int) -> tuple[World, list[str]]:
    """Small repositories mostly, 2% large, with histories over the last half year."""
    rng = random.Random(seed)
    world = World(seed=seed, now=T0)
    names = []
    for i in range(repos):
        name = f"org{i % 97}/repo{i}"
        large = rng.random() < 0.02
        world.add_repository(name, rng.randint(150, 300) if large else rng.randint(2, 25), 180)
        names.append(name)
    return world, names


def tiers_by_activity(rates: dict[str, float]) -> dict[str, str]:
    """The busiest 5% hot, the next 25% warm, the rest cold."""
    ranked = sorted(rates, key=lambda name: -rates[name])
    hot, warm = len(ranked) // 20, len(ranked) * 3 // 10
    return {
        name: "hot" if i < hot else "warm" if i < warm else "cold" for i, name in enumerate(ranked)
    }


class Rig:
    """The database, the sandbox on a simulated clock, the planner and a local worker."""

    def __init__(self, url: str, world: World, clock: Clock) -> None:
        self.url, self.clock = url, clock
        self.sandbox = Sandbox(world, Options(tokens={TOKEN: 10**9}), clock=clock)
        self.store = jobstore.open_store(Settings(pool_size=2), url=url)
        self.storage = Storage(self.store.database("storage"))
        self.registry = Registry(self.store.database("registry"))
        self.dispatcher = Dispatcher(self.store, {}, {})
        self.settings = CaptureSettings(
            token=Secret(TOKEN),
            api_url="http://sandbox.invalid",
            graphql_url="http://sandbox.invalid/graphql",
        )
        self.use(self.settings)
        self.failed = 0

    def use(self, settings: CaptureSettings) -> None:
        """The GitHub clients of `settings`, on the sandbox and the simulated clock."""
        self.settings = settings
        self.github = GitHubFactory(
            settings,
            MemoryBudgets(),
            transport=self.sandbox.transport(),
            sleep=self.sleep,
            now=self.clock,
        )
        self.planner_gh = self.github.github(realtime=False)

    def sleep(self, seconds: float) -> None:
        self.clock.now += timedelta(seconds=seconds)

    freshness = SETTINGS  # the planner's settings

    def plan(self) -> Any:
        return plan_once(
            self.registry, self.dispatcher, self.planner_gh, self.clock(), self.freshness
        )

    def work(self) -> int:
        """Runs every routed local job (and the parents they wake) until none is left."""
        ran = 0
        while waiting := self.store.heads.routed(["local"]):
            for job_id in waiting:
                result = run_job(
                    self.store,
                    job_id,
                    worker="bench",
                    storage=self.storage,
                    settings=self.settings,
                    github=self.github,
                    now=self.clock,
                )
                ran += 1
                self.ran(job_id, result)
        return ran

    def ran(self, job_id: Any, result: Any) -> None:
        """One job's attempt ended (a subclass counts more of it)."""
        self.failed += result.outcome == "failed"

    def close(self) -> None:
        self.github.close()
        self.store.close()


def stored(conn: psycopg.Connection, pending: list[Change]) -> set[int]:
    """Indexes into `pending` of the changes the database holds now."""
    found: set[int] = set()
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, change in enumerate(pending):
        by_kind[change.kind].append(i)
    for kind, indexes in by_kind.items():
        if kind in CHECKS:
            ids = {
                row[0] for row in conn.execute(CHECKS[kind], ([pending[i].ref for i in indexes],))
            }
            found |= {i for i in indexes if pending[i].ref in ids}
            continue
        wanted = [(pending[i].repository, pending[i].number) for i in indexes]
        rows = conn.execute(
            "SELECT lower(r.full_name), p.number, p.updated_at FROM pull_requests p "
            "JOIN repositories r ON r.id = p.repository_id "
            "JOIN unnest(%s::text[], %s::int[]) AS w(repo, number) "
            "ON lower(r.full_name) = w.repo AND p.number = w.number",
            ([r for r, _ in wanted], [n for _, n in wanted]),
        ).fetchall()
        # a new pull request is stored when its row is; an edit when the stored row is at
        # least as new as the edit (a later edit of the same title supersedes it)
        have = {(repo, number): updated for repo, number, updated in rows}
        for i in indexes:
            change = pending[i]
            updated = have.get((change.repository, change.number))
            if updated is not None and (kind == "pull_request" or updated >= change.at):
                found.add(i)
    return found


def attainment(
    changes: list[Change],
    stored_at: dict[int, datetime],
    tiers: dict[str, str],
    start: datetime,
    hours: int,
) -> tuple[float, float, int]:
    """(fraction of (repository, hour) samples within target, fraction of changes stored
    within their tier's target, how many changes could be judged: those whose target
    ended within the run), from what the database held after each step."""
    targets = {name: SETTINGS.tiers[tier].target for name, tier in tiers.items()}
    by_repo: dict[str, list[int]] = defaultdict(list)
    for i, change in enumerate(changes):
        by_repo[change.repository].append(i)
    samples = good = 0
    for name, target in targets.items():
        mine = by_repo.get(name, [])
        for hour in range(1, hours + 1):
            at = start + timedelta(hours=hour)
            samples += 1
            late = any(
                changes[i].at <= at - target and (stored_at.get(i) is None or stored_at[i] > at)
                for i in mine
            )
            good += not late
    end = start + timedelta(hours=hours)
    judged = [i for i, c in enumerate(changes) if c.at + targets[c.repository] <= end]
    within = sum(
        1
        for i in judged
        if i in stored_at and stored_at[i] - changes[i].at <= targets[changes[i].repository]
    )
    return good / max(samples, 1), within / max(len(judged), 1), len(judged)


def naive_points(
    changes: list[Change], tiers: dict[str, str], start: datetime, hours: int, per_sync: float
) -> float:
    """The naive peer: every repository synced once per target period. A sync that finds
    nothing costs its listing query (1 point); one that finds changes costs what a
    refresh cost in this run (the same listing and fetches)."""
    changed: set[tuple[str, int]] = set()
    for change in changes:
        target = SETTINGS.tiers[tiers[change.repository]].target
        changed.add((change.repository, int((change.at - start) / target)))
    total = 0.0
    for name, tier in tiers.items():
        periods = max(1, int(timedelta(hours=hours) / SETTINGS.tiers[tier].target))
        for period in range(periods):
            total += per_sync if (name, period) in changed else 1
    return total


def simulate(
    url: str, repos: int, hours: int, step: timedelta, per_day: float, seed: int
) -> dict[str, Any]:
    world, names = build_world(repos, seed)
    rates = heavy_tailed_rates(names, per_day, seed=seed)
    tiers = tiers_by_activity(rates)
    clock = Clock(T0)
    rig = Rig(url, world, clock)
    try:
        rig.registry.track([Entry(n, tiers[n]) for n in names], clock())
        started = time.perf_counter()
        rig.plan()  # bootstrap: every repository's last 30 days, then its history
        rig.work()
        warmup_s = time.perf_counter() - started
        ledger_start = len(rig.sandbox.ledger.entries)
        clock.now = start = T0 + timedelta(minutes=30)
        activity = Activity(world, rates, start, seed=seed)
        changes: list[Change] = []
        stored_at: dict[int, datetime] = {}
        pending: list[int] = []
        probes = probed = refreshes = 0
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            end = start + timedelta(hours=hours)
            while clock.now < end:
                clock.now = min(end, clock.now + step)
                new = activity.advance(clock.now)
                pending += range(len(changes), len(changes) + len(new))
                changes += new
                report = rig.plan()
                probes += report.probe_points
                probed += report.probed
                refreshes += rig.work()
                found = stored(conn, [changes[i] for i in pending])
                for k in sorted(found):
                    stored_at[pending[k]] = clock.now
                pending = [i for k, i in enumerate(pending) if k not in found]
        wall = time.perf_counter() - started
        spent = sum(e.points for e in rig.sandbox.ledger.entries[ledger_start:])
        refresh_points = spent - probes
        slo, within, judged = attainment(changes, stored_at, tiers, start, hours)
        naive = naive_points(changes, tiers, start, hours, refresh_points / max(refreshes, 1))
        return {
            "repos": repos,
            "hours": hours,
            "changes": len(changes),
            "tiers": {t: sum(v == t for v in tiers.values()) for t in SETTINGS.tiers},
            "slo_attainment": round(slo, 4),
            "changes_stored_within_target": round(within, 4),
            "changes_judged": judged,  # their target ended within the run
            "changes_not_yet_stored": len(pending),
            "probe_points_per_100_repos": round(100 * probes / max(probed, 1), 3),
            "points_per_hour": round(spent / hours, 1),
            "probe_points_per_hour": round(probes / hours, 1),
            "naive_points_per_hour": round(naive / hours, 1),
            "ratio": round(naive / max(spent, 1), 2),
            "refresh_jobs": refreshes,
            "failed_attempts": rig.failed,
            "old_pr_changes": sum(
                1
                for c in changes
                if c.kind in ("review", "comment")
                and world.repository(c.repository).pulls[c.number].created_at
                < c.at - timedelta(days=90)
            ),
            "warmup_s": round(warmup_s, 1),
            "wall_s": round(wall, 1),
        }
    finally:
        rig.close()


@click.command()
@click.option("--repos", default=300, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--hours", default=8, show_default=True, type=click.IntRange(1, 24 * 14))
@click.option("--step-minutes", default=2.0, show_default=True, type=click.FloatRange(0.5, 60))
@click.option("--changes-per-day", default=4000.0, show_default=True, type=click.FloatRange(1))
@click.option("--seed", default=3, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def freshness(
    repos: int, hours: int, step_minutes: float, changes_per_day: float, seed: int, as_json: bool
) -> None:
    """Tracked repositories kept fresh for a simulated day: SLO attainment, change
    latency, probe cost, and points per hour against syncing each once per period."""
    server = db.database_url(load())
    with scratch_database(server, "freshness") as url:
        jobstore.migrate(url)
        result = simulate(url, repos, hours, timedelta(minutes=step_minutes), changes_per_day, seed)
    rows = [
        (
            "repositories (hot / warm / cold)",
            f"{repos} ({' / '.join(map(str, result['tiers'].values()))})",
        ),
        ("simulated hours, changes", f"{hours}, {result['changes']:,}"),
        ("changes on pull requests older than 90 days", f"{result['old_pr_changes']:,}"),
        ("SLO attainment (repository-hours within target)", result["slo_attainment"]),
        (
            "changes stored within their tier's target",
            f"{result['changes_stored_within_target']} (of {result['changes_judged']:,} judged)",
        ),
        ("probe points per 100 repositories", result["probe_points_per_100_repos"]),
        (
            "points per hour (probes)",
            f"{result['points_per_hour']} ({result['probe_points_per_hour']})",
        ),
        ("naive (one sync per repository per period)", result["naive_points_per_hour"]),
        ("naive / ours", result["ratio"]),
        ("refresh jobs, failed attempts", f"{result['refresh_jobs']}, {result['failed_attempts']}"),
        ("wall s (bootstrap warm-up s)", f"{result['wall_s']} ({result['warmup_s']})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(result))
