"""`bin/bench lifecycle`: a tracked fleet while GitHub takes away and moves things, under
both readings of whether editing or deleting a comment moves its pull request, in one run.

Besides ordinary activity (new pull requests, edits, reviews, comments, heavy-tailed
across repositories), comments are edited (any age) and deleted, reviews deleted (on pull
requests active in the run), a share of repositories renamed, transferred to another
owner, deleted or made private, and users renamed. The planner and a local worker run
every step on the simulated clock; after each step every change is looked for in the
database by GitHub's ids. Measured per reading: the share of changes reflected within
their tier's target (user renames: within the contributor cadence), rows the database
shows that GitHub no longer has at the end, renames followed, gone repositories marked,
and what the reconciliations cost.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import click
import psycopg

import jobstore
from capture.freshness.registry import Entry
from devtools.bench.freshness import SETTINGS as FRESHNESS
from devtools.bench.freshness import T0, Clock, build_world
from devtools.bench.freshness import Rig as FreshnessRig
from devtools.bench.store import scratch_database
from devtools.sandbox.activity import Activity, Change, heavy_tailed_rates
from devtools.sandbox.lifecycle import Lifecycle
from jobstore import db
from jobstore.settings import load

# User renames are re-read on a cadence of their own (default 7 days); the run is hours.
SETTINGS = replace(FRESHNESS, contributors_every=timedelta(hours=2))
CONTENT = ("pull_request", "edit", "review", "comment", "comment_edit")
MOVES = ("rename", "transfer", "gone")


class Rig(FreshnessRig):
    """The freshness bench's rig, its points told apart: reconciliations, the rest."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.points: Counter = Counter()
        self.failures: list[str] = []

    freshness = SETTINGS

    def ran(self, job_id: Any, result: Any) -> None:
        job = self.store.get(job_id)
        self.points["reconcile" if "reconcile" in job.params else "jobs"] += result.points
        super().ran(job_id, result)
        if result.outcome == "failed":
            self.failures.append(f"{job.job_type} {job.repository}: {result.detail}")


def one(conn: psycopg.Connection, query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    return None if row is None else row[0]


def reflected(conn: psycopg.Connection, world: Any, change: Change) -> bool | None:
    """Whether the database shows `change` now (None: nothing to judge any more, e.g. a
    change on a repository GitHub then took away)."""
    kind, ref = change.kind, change.ref
    if kind == "user_rename":
        user_id, login = str(ref).split(":", 1)
        return one(conn, "SELECT login FROM contributors WHERE id = %s", int(user_id)) == login
    if kind in MOVES:
        repo_id = int(ref)
        if kind == "gone":
            marked = "SELECT gone_at IS NOT NULL FROM tracked_repositories WHERE repo_id = %s"
            return bool(one(conn, marked, repo_id))
        repo = world.by_id(repo_id)
        if repo is None:
            return None
        stored = one(conn, "SELECT full_name FROM repositories WHERE id = %s", repo_id)
        tracked = one(
            conn, "SELECT repository FROM tracked_repositories WHERE repo_id = %s", repo_id
        )
        return stored == repo.full_name and tracked == repo.full_name.lower()
    repo, _ = world.resolve(change.repository)
    if repo is None:
        return None
    if kind == "pull_request":
        query = "SELECT 1 FROM pull_requests WHERE repository_id = %s AND number = %s"
        return one(conn, query, repo.database_id, change.number) is not None
    if kind == "edit":
        query = "SELECT updated_at FROM pull_requests WHERE repository_id = %s AND number = %s"
        updated = one(conn, query, repo.database_id, change.number)
        return updated is not None and updated >= change.at
    pr = repo.pulls.get(change.number)
    if kind in ("review", "review_delete"):
        live = pr is not None and any(r.database_id == ref for r in pr.reviews)
        row = conn.execute("SELECT deleted_at FROM reviews WHERE id = %s", (ref,)).fetchone()
        if kind == "review":
            return (row is not None and row[0] is None) if live else None
        return row is None or row[0] is not None
    comment_id = int(str(ref).split(":", 1)[0])
    comments = [] if pr is None else [*pr.comments, *pr.review_comments]
    now = next((c for c in comments if c.database_id == comment_id), None)
    row = conn.execute("SELECT body, deleted_at FROM comments WHERE id = %s", (comment_id,))
    found = row.fetchone()
    if kind == "comment_delete":
        return found is None or found[1] is not None
    if now is None:  # deleted since: judged as a deletion
        return None
    # a comment stored live, with the body GitHub shows now (a later edit supersedes)
    return found is not None and found[1] is None and found[0] == now.body


def stale_rows(conn: psycopg.Connection, world: Any, gone: set[int]) -> dict[str, int]:
    """Rows the database shows live that GitHub no longer has (or has otherwise), for the
    repositories GitHub still shows: comments and reviews deleted or edited, repository
    names, tracked repositories gone unmarked, contributor logins."""
    live_comments, live_reviews, prs = {}, set(), set()
    for repo in world.repositories.values():
        for pr in repo.pulls.values():
            prs.add(pr.database_id)
            live_reviews |= {r.database_id for r in pr.reviews}
            live_comments |= {c.database_id: c.body for c in [*pr.comments, *pr.review_comments]}
    comments = conn.execute(
        "SELECT id, body, pull_request_id FROM comments WHERE deleted_at IS NULL"
    ).fetchall()
    reviews = conn.execute(
        "SELECT id, pull_request_id FROM reviews WHERE deleted_at IS NULL"
    ).fetchall()
    names = conn.execute("SELECT id, full_name FROM repositories WHERE name_stale_at IS NULL")
    tracked = conn.execute("SELECT repo_id, gone_at FROM tracked_repositories").fetchall()
    logins = {a.database_id: a.login for a in world.users + world.bots}
    stored_logins = conn.execute("SELECT id, login FROM contributors").fetchall()
    return {
        "comments": sum(
            1 for i, body, pr in comments if pr in prs and live_comments.get(i, None) != body
        ),
        "reviews": sum(1 for i, pr in reviews if pr in prs and i not in live_reviews),
        "repository_names": sum(
            1
            for i, name in names
            if world.by_id(i) is not None and world.by_id(i).full_name != name
        ),
        "gone_unmarked": sum(1 for i, at in tracked if i in gone and at is None),
        "logins": sum(1 for i, login in stored_logins if i in logins and logins[i] != login),
    }


def simulate(
    url: str,
    repos: int,
    hours: int,
    step: timedelta,
    per_day: float,
    seed: int,
    bumps: bool,
    reconcile: str = "auto",
) -> dict[str, Any]:
    world, names = build_world(repos, seed)
    world.edit_bumps_pr = bumps
    rates = heavy_tailed_rates(names, per_day, seed=seed)
    tiers = hot_and_warm(rates)
    clock = Clock(T0)
    rig = Rig(url, world, clock)
    rig.freshness = replace(SETTINGS, reconcile=reconcile)
    rng = random.Random(seed)
    # Histories hold edited comments, as real ones do (under either reading).
    for _ in range(max(3, repos // 10)):
        repo = world.repositories[rng.choice(sorted(world.repositories))]
        commented = [p for p in repo.pulls.values() if p.comments]
        if commented:
            pr = rng.choice(commented)
            at = T0 - timedelta(hours=rng.uniform(1, 48))
            body = "Edited before tracking."
            world.edit_comment(repo.full_name, pr.number, pr.comments[0].database_id, at, body)
    try:
        rig.registry.track([Entry(n, tiers[n]) for n in names], clock())
        rig.plan()  # bootstrap
        rig.work()
        clock.now = start = T0 + timedelta(minutes=30)
        rig.plan()  # a first probe: ids known, contributors read
        rig.work()
        # changes for `hours`, then as long as the longest target with none, so every
        # change can be judged against its deadline
        quiet = start + timedelta(hours=hours)
        end = quiet + max(SETTINGS.tiers[t].target for t in set(tiers.values()))
        end = max(end, quiet + SETTINGS.contributors_every + timedelta(minutes=10))
        activity = Activity(world, rates, start, seed=seed)
        life = Lifecycle(world, per_hour=max(1.0, per_day / 24 / 2), start=start, seed=seed)
        moved = rng.sample(names, max(3, repos // 10))
        for i, name in enumerate(moved):
            at = start + timedelta(seconds=rng.uniform(0, 1) * hours * 3600)
            life.moves[name] = (MOVES[i % 3], at.replace(microsecond=0))
        with psycopg.connect(url, autocommit=True) as conn:
            known = [
                r[0] for r in conn.execute("SELECT id FROM contributors WHERE node_id IS NOT NULL")
            ]
        users = [u.database_id for u in world.users if u.database_id in set(known)]
        for user_id in rng.sample(users, min(5, len(users))):
            at = start + timedelta(seconds=rng.uniform(0, 1) * hours * 3600)
            life.user_renames.append((user_id, at.replace(microsecond=0)))
        changes: list[Change] = []
        stored_at: dict[int, datetime] = {}
        pending: list[int] = []
        started = time.perf_counter()
        spent_before = sum(e.points for e in rig.sandbox.ledger.entries)
        rig.points.clear()
        with psycopg.connect(url, autocommit=True) as conn:
            while clock.now < end:
                clock.now = min(end, clock.now + step)
                new = []
                if clock.now <= quiet:
                    new = activity.advance(clock.now)
                    for change in new:
                        life.written(change)
                    new += life.advance(clock.now)
                pending += range(len(changes), len(changes) + len(new))
                changes += new
                rig.plan()
                rig.work()
                still = []
                for i in pending:
                    seen = reflected(conn, world, changes[i])
                    if seen is None:
                        continue  # nothing left to judge
                    if seen:
                        stored_at[i] = clock.now
                    else:
                        still.append(i)
                pending = still
            hidden = {r.database_id for r in world.hidden.values()}
            stale = stale_rows(conn, world, hidden)
        wall = time.perf_counter() - started
        spent = sum(e.points for e in rig.sandbox.ledger.entries) - spent_before
        return summary(
            changes, stored_at, pending, tiers, end, stale, rig, spent, hours, repos, wall
        )
    finally:
        rig.close()


def hot_and_warm(rates: dict[str, float]) -> dict[str, str]:
    """The busiest 10% hot, the rest warm: every change's target ends within the run's
    settling time (a cold tier's 24 hours would make the run a day longer)."""
    ranked = sorted(rates, key=lambda name: -rates[name])
    return {name: "hot" if i < len(ranked) // 10 else "warm" for i, name in enumerate(ranked)}


def deadline(change: Change, tiers: dict[str, str]) -> timedelta:
    if change.kind == "user_rename":
        return SETTINGS.contributors_every + timedelta(minutes=10)
    return SETTINGS.tiers[tiers[change.repository]].target


def summary(
    changes: list[Change],
    stored_at: dict[int, datetime],
    pending: list[int],
    tiers: dict[str, str],
    end: datetime,
    stale: dict[str, int],
    rig: Rig,
    spent: int,
    hours: float,
    repos: int,
    wall: float,
) -> dict[str, Any]:
    """The changes whose deadline ended within the run, judged: converged within it."""
    judged = [
        i
        for i, c in enumerate(changes)
        if (c.kind == "user_rename" or c.repository in tiers) and c.at + deadline(c, tiers) <= end
    ]
    judged = [i for i in judged if i in stored_at or i in pending]
    within = [
        i
        for i in judged
        if i in stored_at and stored_at[i] - changes[i].at <= deadline(changes[i], tiers)
    ]
    by_kind: dict[str, list[int]] = {}
    for i in judged:
        by_kind.setdefault(changes[i].kind, []).append(i)
    share = {k: round(sum(i in within for i in v) / len(v), 4) for k, v in sorted(by_kind.items())}
    moves = [i for i, c in enumerate(changes) if c.kind in ("rename", "transfer")]
    gone = [i for i, c in enumerate(changes) if c.kind == "gone"]
    per_day = 24 / hours * 100 / repos
    return {
        "changes": len(changes),
        "changes_judged": len(judged),
        "changes_converged": round(len(within) / max(len(judged), 1), 4),
        "converged_by_kind": share,
        "judged_by_kind": {k: len(v) for k, v in sorted(by_kind.items())},
        "stale_rows": sum(stale.values()),
        "stale_by_kind": stale,
        "renames_followed": round(sum(i in stored_at for i in moves) / max(len(moves), 1), 4),
        "renames": len(moves),
        "repos_gone_marked": round(sum(i in stored_at for i in gone) / max(len(gone), 1), 4),
        "repos_gone": len(gone),
        "reconcile_points_per_100_repos_per_day": round(rig.points["reconcile"] * per_day, 1),
        "points_per_100_repos_per_day": round(spent * per_day, 1),
        "failed_attempts": rig.failed,
        "failures": rig.failures[:5],
        "wall_s": round(wall, 1),
    }


def worst(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Both readings in one line: the weaker of each share, the sum of stale rows."""
    both = list(results.values())
    return {
        "changes_converged": min(r["changes_converged"] for r in both),
        "stale_rows": sum(r["stale_rows"] for r in both),
        "renames_followed": min(r["renames_followed"] for r in both),
        "repos_gone_marked": min(r["repos_gone_marked"] for r in both),
        "reconcile_points_per_100_repos_per_day": {
            k: r["reconcile_points_per_100_repos_per_day"] for k, r in results.items()
        },
    }


@click.command()
@click.option("--repos", default=60, show_default=True, type=click.IntRange(10, 10_000))
@click.option(
    "--hours",
    default=4,
    show_default=True,
    type=click.IntRange(1, 24 * 7),
    help="Of changes; then 6 quiet hours (the warm target) so every change is judged.",
)
@click.option("--step-minutes", default=2.0, show_default=True, type=click.FloatRange(0.5, 60))
@click.option("--changes-per-day", default=600.0, show_default=True, type=click.FloatRange(1))
@click.option("--seed", default=5, show_default=True, type=int)
@click.option(
    "--reconcile",
    type=click.Choice(["auto", "always"]),
    default="auto",
    show_default=True,
    help="CAPTURE_RECONCILE: auto starts once an edit was seen not to move its pull request.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def lifecycle(
    repos: int,
    hours: int,
    step_minutes: float,
    changes_per_day: float,
    seed: int,
    reconcile: str,
    as_json: bool,
) -> None:
    """A fleet while GitHub deletes, edits, renames, transfers and takes away, under both
    readings of whether an edit moves its pull request: changes converged within target,
    stale rows left, renames followed, gone repositories marked, reconciliation cost."""
    server = db.database_url(load())
    results = {}
    for reading, bumps in (("edit_bumps_pr_yes", True), ("edit_bumps_pr_no", False)):
        with scratch_database(server, f"lifecycle-{int(bumps)}") as url:
            jobstore.migrate(url)
            step = timedelta(minutes=step_minutes)
            results[reading] = simulate(
                url, repos, hours, step, changes_per_day, seed, bumps, reconcile
            )
    rows = [
        ("repositories, hours of changes (+ quiet)", lambda r: f"{repos}, {hours} (+6)"),
        ("changes (judged)", lambda r: f"{r['changes']} ({r['changes_judged']})"),
        ("changes converged within target", lambda r: r["changes_converged"]),
        ("stale rows at the end", lambda r: r["stale_rows"]),
        ("stale rows, by kind", lambda r: " ".join(f"{v}" for v in r["stale_by_kind"].values())),
        ("renames and transfers followed", lambda r: f"{r['renames_followed']} of {r['renames']}"),
        ("gone repositories marked", lambda r: f"{r['repos_gone_marked']} of {r['repos_gone']}"),
        (
            "reconcile points / 100 repos / day",
            lambda r: r["reconcile_points_per_100_repos_per_day"],
        ),
        ("all points / 100 repos / day", lambda r: r["points_per_100_repos_per_day"]),
        ("failed attempts", lambda r: r["failed_attempts"]),
        ("wall s", lambda r: r["wall_s"]),
    ]
    width = max(len(name) for name, _ in rows)
    click.echo(f"{'':<{width}}  {'edits bump PR':>16}  {'edits move nothing':>18}")
    for name, value in rows:
        yes, no = (value(results[k]) for k in results)
        click.echo(f"{name:<{width}}  {yes!s:>16}  {no!s:>18}")
    for reading, result in results.items():
        shares = ", ".join(f"{k} {v}" for k, v in result["converged_by_kind"].items())
        click.echo(f"{reading}: converged by kind: {shares}")
    if as_json:
        click.echo(json.dumps(worst(results) | results))
