"""github-webhooks: a repository's stored webhook deliveries, acted on (one active job per
repository: deliveries that arrive while it waits are its too).

Each batch of deliveries is stored as its payloads carry it, guarded by GitHub's
`updated_at`, in one transaction with the deliveries' new status. Pull requests whose
files or commits the payload does not carry (opened, reopened, synchronize), or whose
comments arrived before them, are captured by one targeted refresh once the coalescing
window after the first of them has passed: a burst of changes on a pull request (or on
several) costs one refresh. The refresh takes, with its own, the pull requests other
repositories are waiting for that its credential can read (same installation, or public),
claimed so no other job takes them: GitHub charges a point per query, however few pull
requests it holds, and one nodes(ids:) query holds dozens."""

from __future__ import annotations

from datetime import timedelta

from capture.errors import Incomplete, RequestRefused
from capture.handlers.base import Context, Outcome
from capture.handlers.pulls import capture_details_across, capture_pulls
from capture.settings import WebhookSettings
from capture.webhooks.deliveries import Claimed, Deliveries
from capture.webhooks.payloads import Effect, Unusable, apply

ALL = {"details", "reviews", "comments"}
CLAIM_MOST = 200  # deliveries one batch takes (the planner splits them into queries)
CLAIM_STALE = timedelta(minutes=10)  # a claim this old is a job that died: taken again


def repository_id(ctx: Context) -> int:
    value = ctx.job.params.get("repository_id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RequestRefused(f"params.repository_id must be GitHub's repository id, got {value!r}")
    return value


def run(ctx: Context) -> Outcome:
    repo_id = repository_id(ctx)
    deliveries = Deliveries(ctx.storage.db, ctx.storage)
    settings = WebhookSettings.load()
    window = timedelta(seconds=settings.coalesce_seconds)
    details = timedelta(seconds=settings.details_seconds)
    applied = quarantined = refreshed = 0
    summary: dict = {}
    while True:
        batch = deliveries.open(repo_id, "received")
        if batch:
            effects, refused = {}, {}
            for d in batch:
                effects[d.delivery_id] = effect = Effect()
                try:
                    apply(effect, d.delivery_id, d.event, d.action, d.payload)
                except Unusable as exc:
                    refused[d.delivery_id] = str(exc)
                    effects.pop(d.delivery_id)
            done = deliveries.apply(repo_id, batch, effects, refused, ctx.job.id, ctx.now())
            applied += len(batch) - done.quarantined
            quarantined += done.quarantined
            ctx.checkpoint(applied, None, None, note=f"{applied} deliveries applied")
            continue
        waiting = deliveries.open(repo_id, "refresh")
        if not waiting:
            break
        stored = deliveries.stored_pulls(
            {(repo_id, n) for d in waiting for n in d.refresh_numbers or ()}
        )
        due = min(
            d.received_at
            + (details if all((repo_id, n) in stored for n in d.refresh_numbers or ()) else window)
            for d in waiting
        )
        if ctx.now() < due:  # later changes (here and elsewhere) join this refresh
            summary["waiting"] = len(waiting)
            return Outcome(
                items=applied,
                wait_until=due,
                summary=_summary(applied, quarantined, refreshed) | summary,
            )
        claimed = deliveries.claim(
            repo_id, ctx.job.id, ctx.now(), ctx.now() - CLAIM_STALE, CLAIM_MOST
        )
        if not any(d.repository_id == repo_id for d in claimed):
            # another job's batch holds them: it refreshes them; look again later
            deliveries.release(claimed, ctx.job.id)
            return Outcome(
                items=applied,
                wait_until=ctx.now() + window,
                summary=_summary(applied, quarantined, refreshed) | {"held": len(waiting)},
            )
        refreshed += _refresh(ctx, deliveries, repo_id, claimed)
    return Outcome(items=applied, summary=_summary(applied, quarantined, refreshed))


def _refresh(ctx: Context, deliveries: Deliveries, repo_id: int, claimed: list[Claimed]) -> int:
    """The claimed deliveries' pull requests captured: stored ones' files and commits in
    batches across repositories, this repository's unstored ones whole. Deliveries of
    another repository whose pull request is not stored, or failed, are given back to
    their own job; this repository's failures fail the attempt (they wait, and are
    retried). Returns how many pull requests were refreshed."""
    wanted = {(d.repository_id, n) for d in claimed for n in d.refresh_numbers or ()}
    ids = deliveries.stored_pulls(wanted)
    own = {n for r, n in wanted if r == repo_id and (r, n) not in ids}
    failed = {(r, n) for r, n in wanted if r != repo_id and (r, n) not in ids}
    ctx.start_over()  # a few pull requests, fetched whole each time
    stored = sorted((r, n, ids[(r, n)]) for r, n in wanted if (r, n) in ids)
    failed |= capture_details_across(ctx, stored)
    if own and capture_pulls(ctx, sorted(own), ALL).failed_items:
        failed |= {(repo_id, n) for n in own}
    done = [
        d for d in claimed if not {(d.repository_id, n) for n in d.refresh_numbers or ()} & failed
    ]
    deliveries.refreshed(done, ctx.job.id, ctx.now())
    deliveries.release([d for d in claimed if d not in done], ctx.job.id)
    mine = sum(r == repo_id for r, _ in failed)
    if mine:
        raise Incomplete(f"{mine} pull requests could not be captured; their deliveries wait")
    return len(wanted) - len(failed)


def _summary(applied: int, quarantined: int, refreshed: int) -> dict:
    return {"applied": applied, "quarantined": quarantined, "refreshed": refreshed}
