"""`bin/bench webhooks`: a fleet with the App installed on part of it, kept fresh by
webhooks (probes as the safety net) against the same fleet probe-only, in one run.

The sandbox's world changes over simulated time (new pull requests, edits, reviews,
comments; comments edited and deleted). For the repositories an installation covers, the
sandbox delivers each change as GitHub would, signed, to bin/serve's Flask app in process,
with 10% of deliveries dropped (GitHub logs them failed), 5% duplicated and 5% reordered,
and the receiver down for a stretch (--down-minutes). A local worker runs the apply jobs;
the planner runs a pass a minute (installation events, catch-up, the reconciler every 5
minutes, probes) and the delivery log is rechecked every CAPTURE_WEBHOOK_RECHECK_SECONDS.
Every change is looked for in the database by GitHub's ids each step.

Measured for the webhook repositories: the share of changes stored by the end (after half
an hour with no new changes, for the reconciler to finish), seconds from a change to it
being stored (p95), refreshes a pull request had without a new delivery for it, points
per change (their jobs' points and their share of the probes); for the whole fleet,
points per hour against the probe-only peer on the same world; and forged deliveries
refused.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import click
import psycopg

import jobstore
from capture.api.app import ApiSettings, Context, create_app
from capture.freshness.loop import plan_once
from capture.freshness.registry import Entry
from capture.settings import CaptureSettings, WebhookSettings
from capture.webhooks.planner import recheck
from devtools.bench.budget import private_key
from devtools.bench.freshness import SETTINGS, T0, Clock, build_world, tiers_by_activity
from devtools.bench.freshness import Rig as FreshnessRig
from devtools.bench.lifecycle import reflected
from devtools.bench.store import scratch_database
from devtools.sandbox.activity import Activity, Change, heavy_tailed_rates
from devtools.sandbox.apps import Installation
from devtools.sandbox.lifecycle import Lifecycle
from devtools.sandbox.webhooks import Faults, sign
from jobstore import Route, Secret, db
from jobstore.settings import load

SECRET = "bench-webhook-secret-0123456789"
PATH = "/v1/github/webhooks"
APP_ID = 31337
LOCAL = Route("local", "explicit", "bench")
KINDS = (("comment_edit", 0.6), ("comment_delete", 0.4))  # GitHub has no review-deleted hook
PLAN_EVERY = timedelta(minutes=1)
RECHECK_EVERY = timedelta(seconds=WebhookSettings().recheck_seconds)  # bin/plan's default
SETTLE = timedelta(minutes=30)
FORGED = 50


class HookRig(FreshnessRig):
    """The freshness bench's rig with the App's webhook delivering to the API app."""

    def __init__(
        self, url: str, world: Any, clock: Clock, owners: list[str], faults: Faults, seed: int
    ) -> None:
        super().__init__(url, world, clock)
        pem, public = private_key()
        # the token for captures, the app for its /app endpoints (the reconciler)
        self.github.close()
        self.use(
            CaptureSettings(**{**self.settings.__dict__, "app_id": APP_ID, "app_key": Secret(pem)})
        )
        self.webhooks = WebhookSettings(
            secrets=(Secret(SECRET),), lane="local", reconcile_minutes=5
        )
        self.ctx = Context(self.store, SETTINGS, now=clock)
        api = create_app(
            self.ctx, ApiSettings.load({"CAPTURE_API_TOKENS": "b" * 32}), self.webhooks
        )
        self.client = api.test_client()
        self.sandbox.apps.register(APP_ID, public)
        for i, owner in enumerate(owners):
            self.sandbox.apps.install(Installation(5000 + i, APP_ID, owner))
        self.owners = set(owners)
        self.hooks = self.sandbox.enable_webhooks(SECRET, PATH, self.send, faults, seed)
        self.job_points: dict[str, int] = defaultdict(int)
        self.probed: dict[str, int] = defaultdict(int)
        self.type_points: dict[str, int] = defaultdict(int)

    def send(self, url: str, headers: dict, body: bytes) -> int:
        return self.client.post(url, data=body, headers=headers).status_code

    def plan(self) -> Any:
        report = plan_once(
            self.registry,
            self.dispatcher,
            self.planner_gh,
            self.clock(),
            self.freshness,
            self.webhooks,
        )
        return report

    def ran(self, job_id: Any, result: Any) -> None:
        super().ran(job_id, result)
        job = self.store.get(job_id)
        self.job_points[job.repository.lower()] += result.points
        hooked = job.repository.split("/")[0] in self.owners
        kind = next((k for k in ("reconcile", "bootstrap") if k in job.params), "")
        what = f"{job.job_type}{':' + kind if kind else ''}"
        self.type_points[f"{what}{' (webhook repo)' if hooked else ''}"] += result.points

    def close(self) -> None:
        self.ctx.close()
        super().close()


def due_again(rig: FreshnessRig) -> None:
    """The sweeper's part: jobs waiting for a time that has come are routed again."""
    for job_id in rig.store.due_retries(rig.clock()):
        rig.store.route(job_id, LOCAL, rig.clock())


def run(
    url: str,
    repos: int,
    hours: int,
    per_day: float,
    share: float,
    seed: int,
    hooked: bool,
    down_minutes: int,
) -> dict[str, Any]:
    """One run on a fresh database: with the App's webhooks on `share` of the owners, or
    probe-only."""
    world, names = build_world(repos, seed)
    rates = heavy_tailed_rates(names, per_day, seed=seed)
    tiers = tiers_by_activity(rates)
    owners = sorted({n.split("/")[0] for n in names})
    installed = sorted(random.Random(seed).sample(owners, round(len(owners) * share)))
    clock = Clock(T0)
    start = T0 + timedelta(minutes=30)
    outage = start + timedelta(hours=1) if hours > 1 else start + timedelta(minutes=20)
    down = [(outage, outage + timedelta(minutes=down_minutes))]
    faults = Faults(drop=0.10, duplicate=0.05, reorder=0.05, down=down)
    rig: FreshnessRig = (
        HookRig(url, world, clock, installed, faults, seed)
        if hooked
        else FreshnessRig(url, world, clock)
    )
    step = timedelta(seconds=3) if hooked else timedelta(minutes=1)
    try:
        rig.registry.track([Entry(n, tiers[n]) for n in names], clock())
        if isinstance(rig, HookRig):
            covered = [n for n in names if n.split("/")[0] in installed]
            for i, owner in enumerate(installed):
                repos_of = [world.repository(n) for n in covered if n.startswith(owner + "/")]
                rig.hooks.installation_event("installation", "created", 5000 + i, repos_of)
            rig.hooks.pump(clock())
        rig.plan()
        rig.work()
        if isinstance(rig, HookRig):
            rig.type_points.clear()
            rig.job_points.clear()  # the bootstrap is the same in both runs: not counted
        clock.now = start
        if isinstance(rig, HookRig):
            rig.hooks.pump(clock())
        ledger_start = len(rig.sandbox.ledger.entries)
        activity = Activity(world, rates, start, seed=seed)
        lifecycle = Lifecycle(world, per_day / 24 * 0.1, start, seed=seed, kinds=KINDS)
        changes: list[Change] = []
        stored_at: dict[int, Any] = {}
        pending: list[int] = []
        webhook_repos = {n for n in names if n.split("/")[0] in installed} if hooked else set()
        end, last_plan, last_recheck = start + timedelta(hours=hours), None, None
        probe_points = probed_total = rode = 0
        hooked_probe_points = 0.0
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            while clock.now < end + SETTLE:
                clock.now = clock.now + step
                if clock.now <= end:
                    new = activity.advance(clock.now)
                    for change in new:
                        lifecycle.written(change)
                    new += lifecycle.advance(clock.now)
                    pending += range(len(changes), len(changes) + len(new))
                    changes += new
                if isinstance(rig, HookRig):
                    rig.hooks.pump(clock.now)
                    if last_recheck is None or clock.now - last_recheck >= RECHECK_EVERY:
                        recheck(
                            rig.store.database("webhooks"),
                            rig.planner_gh.session.pool.app,
                            clock.now,
                            rig.dispatcher,
                            "local",
                        )
                        last_recheck = clock.now
                due_again(rig)
                if last_plan is None or clock.now - last_plan >= PLAN_EVERY:
                    report = rig.plan()
                    last_plan = clock.now
                    probe_points += report.probe_points
                    if report.probe_due:  # a query's points, by who was due in it; what
                        # riders (webhook pull requests' details) added is theirs whole
                        queries = -(-report.probed // 100)
                        extra = max(0, report.probe_points - queries) if report.rode else 0
                        hooked_probe_points += extra + (report.probe_points - extra) * (
                            report.probe_due_webhooks / report.probe_due
                        )
                    rode += report.rode
                    probed_total += report.probed
                rig.work()
                still = []
                for i in pending:
                    found = reflected(conn, world, changes[i])
                    if found:
                        stored_at[i] = clock.now
                    elif found is not None:
                        still.append(i)
                pending = still
        wall = time.perf_counter() - started
        entries = rig.sandbox.ledger.entries[ledger_start:]
        # The App's own requests (JWT: the delivery log, redeliveries, installation tokens)
        # draw on the App's REST budget, not on a capture credential's.
        app = [e for e in entries if e.path.startswith("/app/")]
        spent = sum(e.points for e in entries) - sum(e.points for e in app)
        span = (end + SETTLE - start).total_seconds() / 3600
        by_kind: dict[str, int] = defaultdict(int)
        for e in entries:
            what = e.extra.get("operation") or e.kind
            if e.kind == "rest":
                parts = e.path.split("/")
                last = "{id}" if parts[-1].isdigit() else parts[-1]
                what = f"rest /{parts[1]}/…/{last}" if len(parts) > 3 else f"rest {e.path}"
            by_kind[what] += e.points
        result: dict[str, Any] = {
            "changes": len(changes),
            "points": spent,
            "points_per_hour": round(spent / span, 1),
            "app_requests_per_hour": round(len(app) / span, 1),
            "points_by_operation": dict(by_kind),
            "probe_points": probe_points,
            "details_rode_probes": rode,
            "wall_s": round(wall, 1),
        }
        if isinstance(rig, HookRig):
            result |= measure_hooks(
                rig,
                conn_url=url,
                changes=changes,
                stored_at=stored_at,
                webhook_repos=webhook_repos,
                world=world,
                probe_points=hooked_probe_points,
                all_probe_points=probe_points,
            )
        return result
    finally:
        rig.close()


def measure_hooks(
    rig: HookRig,
    conn_url: str,
    changes: list[Change],
    stored_at: dict[int, Any],
    webhook_repos: set[str],
    world: Any,
    probe_points: float,
    all_probe_points: int,
) -> dict[str, Any]:
    ours = [i for i, c in enumerate(changes) if c.repository.lower() in webhook_repos]
    with psycopg.connect(conn_url, autocommit=True) as conn:
        judged = [i for i in ours if reflected(conn, world, changes[i]) is not None]
        final = [i for i in judged if reflected(conn, world, changes[i])]
        deliveries = conn.execute(
            "SELECT event, status, count(*), sum(duplicates) FROM github_deliveries "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        waits = [
            s
            for (s,) in conn.execute(
                "SELECT extract(epoch FROM processed_at - received_at)::float FROM "
                "github_deliveries WHERE note = 'its pull request refreshed' ORDER BY 1"
            ).fetchall()
        ]
        refreshes = conn.execute(
            "SELECT job_id, processed_at, refresh_numbers, repository_id, received_at "
            "FROM github_deliveries WHERE note = 'its pull request refreshed'"
        ).fetchall()

    def p95(chosen: list[int]) -> float | None:
        seconds = sorted((stored_at[i] - changes[i].at).total_seconds() for i in chosen)
        return seconds[int(0.95 * (len(seconds) - 1))] if seconds else None

    stored = [i for i in ours if i in stored_at]
    up = [i for i in stored if not rig.hooks.faults.is_down(changes[i].at)]
    # A refresh of a pull request with no delivery for it since its previous refresh.
    events: dict[tuple[int, int], list] = defaultdict(list)
    for job_id, at, numbers, repo_id, received in refreshes:
        for n in numbers or ():
            events[(repo_id, n)].append((at, job_id, received))
    duplicates = 0
    for tries in events.values():
        by_refresh: dict[Any, list] = defaultdict(list)
        for at, job_id, received in tries:
            by_refresh[(at, job_id)].append(received)
        previous = None
        for key in sorted(by_refresh):
            if previous is not None and all(r <= previous for r in by_refresh[key]):
                duplicates += 1
            previous = key[0]
    webhook_points = sum(p for r, p in rig.job_points.items() if r in webhook_repos)
    share = len(webhook_repos) / max(len(rig.registry.tracked()), 1)
    forged = forge(rig)
    return {
        "webhook_repos": len(webhook_repos),
        "webhook_changes": len(ours),
        "changes_stored": round(len(final) / max(len(judged), 1), 4),
        "change_to_stored_p95_s": p95(stored),
        "change_to_stored_p95_s_receiver_up": p95(up),
        "change_to_stored_max_s": max(
            ((stored_at[i] - changes[i].at).total_seconds() for i in stored), default=None
        ),
        "duplicate_refreshes": duplicates,
        "pull_refreshes": sum(len(v) for v in events.values()),
        # a new pull request's files and commits (or a synchronize's): received to stored
        "details_wait_p95_s": round(waits[int(0.95 * (len(waits) - 1))], 1) if waits else None,
        "details_points": rig.type_points.get("github-webhooks (webhook repo)", 0),
        # the probes' points: a query's, shared among the repositories due in it (those
        # filling it up ride free); by share of the fleet for comparison
        "points_per_change": round((webhook_points + probe_points) / max(len(ours), 1), 4),
        "points_per_change_fleet_share": round(
            (webhook_points + all_probe_points * share) / max(len(ours), 1), 4
        ),
        "webhook_probe_points": round(probe_points, 1),
        "bad_signatures_refused": forged,
        "deliveries": [list(map(_plain, row)) for row in deliveries],
        "attempts_logged": len(rig.hooks.log),
        "attempts_failed": sum(a.status_code == 0 or a.status_code >= 300 for a in rig.hooks.log),
        "redeliveries": sum(a.redelivery for a in rig.hooks.log),
        "points_by_job_type": dict(rig.type_points),
    }


def _plain(value: Any) -> Any:
    return int(value) if hasattr(value, "is_integer") or isinstance(value, int) else value


def forge(rig: HookRig) -> float:
    """Deliveries signed with another secret, unsigned, or altered after signing: the
    share answered 401 with nothing written."""
    before = rig.store.database("bench").one("SELECT count(*) AS n FROM github_deliveries")["n"]
    refused = 0
    body = json.dumps({"action": "opened", "repository": {"id": 1, "full_name": "x/y"}}).encode()
    for i in range(FORGED):
        headers = {"x-github-event": "pull_request", "x-github-delivery": f"forged-{i}"}
        if i % 3 == 0:
            headers["x-hub-signature-256"] = sign("not-the-secret-at-all", body)
        elif i % 3 == 1:
            headers["x-hub-signature-256"] = sign(SECRET, body)
            body = body + b" "  # altered after signing
        answer = rig.client.post(PATH, data=body, headers=headers)
        refused += answer.status_code == 401
    after = rig.store.database("bench").one("SELECT count(*) AS n FROM github_deliveries")["n"]
    return refused / FORGED if after == before else 0.0


@click.command()
@click.option("--repos", default=300, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--hours", default=4, show_default=True, type=click.IntRange(1, 48))
@click.option("--changes-per-day", default=4000.0, show_default=True, type=click.FloatRange(1))
@click.option("--installed", default=0.8, show_default=True, type=click.FloatRange(0.05, 1.0))
@click.option(
    "--down-minutes",
    default=10,
    show_default=True,
    type=click.IntRange(0, 120),
    help="How long the receiver is down (an hour in, or 20 minutes into a 1-hour run).",
)
@click.option("--seed", default=5, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def webhooks(
    repos: int,
    hours: int,
    changes_per_day: float,
    installed: float,
    down_minutes: int,
    seed: int,
    as_json: bool,
) -> None:
    """A fleet kept fresh by webhooks with faults, against the same fleet probe-only."""
    server = db.database_url(load())
    os.environ.setdefault("CAPTURE_WEBHOOK_COALESCE_SECONDS", "30")
    results = {}
    for mode in ("webhooks", "probe_only"):
        with scratch_database(server, f"webhooks_{mode}") as url:
            jobstore.migrate(url)
            results[mode] = run(
                url,
                repos,
                hours,
                changes_per_day,
                installed,
                seed,
                mode == "webhooks",
                down_minutes,
            )
    ours, peer = results["webhooks"], results["probe_only"]
    result = {
        "repos": repos,
        "hours": hours,
        "installed_share": installed,
        "down_minutes": down_minutes,
        **{k: v for k, v in ours.items() if k not in ("points",)},
        "probe_only_points_per_hour": peer["points_per_hour"],
        "ratio": round(peer["points_per_hour"] / max(ours["points_per_hour"], 0.1), 2),
        "peer_wall_s": peer["wall_s"],
    }
    rows = [
        ("repositories (webhook)", f"{repos} ({ours['webhook_repos']})"),
        ("simulated hours (+ settle)", f"{hours} (+{SETTLE.seconds // 60} min)"),
        ("changes (on webhook repositories)", f"{ours['changes']:,} ({ours['webhook_changes']:,})"),
        ("changes_stored", ours["changes_stored"]),
        (
            "change_to_stored_p95_s (receiver up; max)",
            f"{ours['change_to_stored_p95_s']} ({ours['change_to_stored_p95_s_receiver_up']}; "
            f"{ours['change_to_stored_max_s']})",
        ),
        (
            "duplicate_refreshes (of pull_refreshes)",
            f"{ours['duplicate_refreshes']} ({ours['pull_refreshes']})",
        ),
        ("points_per_change", ours["points_per_change"]),
        ("bad_signatures_refused", ours["bad_signatures_refused"]),
        (
            "attempts logged / failed / redeliveries",
            f"{ours['attempts_logged']} / {ours['attempts_failed']} / {ours['redeliveries']}",
        ),
        ("points_per_hour (probe-only)", f"{ours['points_per_hour']} ({peer['points_per_hour']})"),
        ("ratio", result["ratio"]),
        ("wall s (peer)", f"{ours['wall_s']} ({peer['wall_s']})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(result, default=str))
