"""github-webhooks: a repository's stored webhook deliveries, acted on (one active job per
repository: deliveries that arrive while it waits are its too).

Each batch of deliveries is stored as its payloads carry it, guarded by GitHub's
`updated_at`, in one transaction with the deliveries' new status. Pull requests whose
files or commits the payload does not carry (opened, reopened, synchronize), or whose
comments arrived before them, are captured whole by one targeted refresh once the
coalescing window after the first of them has passed: a burst of changes on a pull
request (or on several) costs one refresh."""

from __future__ import annotations

from datetime import timedelta

from capture.errors import Incomplete, RequestRefused
from capture.handlers.base import Context, Outcome
from capture.handlers.pulls import capture_pulls
from capture.settings import WebhookSettings
from capture.webhooks.deliveries import Deliveries
from capture.webhooks.payloads import Effect, Unusable, apply

ALL = {"details", "reviews", "comments"}
DETAILS = {"details"}  # files and commits (the pull request's own row came with it)


def repository_id(ctx: Context) -> int:
    value = ctx.job.params.get("repository_id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RequestRefused(f"params.repository_id must be GitHub's repository id, got {value!r}")
    return value


def run(ctx: Context) -> Outcome:
    repo_id = repository_id(ctx)
    deliveries = Deliveries(ctx.storage.db, ctx.storage)
    window = timedelta(seconds=WebhookSettings.load().coalesce_seconds)
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
        due = min(d.received_at for d in waiting) + window
        if ctx.now() < due:  # later changes on them join this refresh
            summary["waiting"] = len(waiting)
            return Outcome(
                items=applied,
                wait_until=due,
                summary=_summary(applied, quarantined, refreshed) | summary,
            )
        numbers = sorted({n for d in waiting for n in d.refresh_numbers or ()})
        # stored (from its payload): its files and commits; not yet: whole
        stored = set(ctx.storage.node_ids(ctx.job.repository, numbers))
        ctx.start_over()  # a few pull requests, fetched whole each time
        outcome = Outcome()
        for chosen, parts in ((sorted(stored), DETAILS), (sorted(set(numbers) - stored), ALL)):
            if chosen:
                done = capture_pulls(ctx, chosen, parts)
                outcome.failed_items += done.failed_items
        if outcome.failed_items:
            raise Incomplete(
                f"{outcome.failed_items} of {len(numbers)} pull requests could not be captured; "
                "their deliveries wait"
            )
        deliveries.refreshed(waiting, ctx.job.id, ctx.now())
        refreshed += len(numbers)
    return Outcome(items=applied, summary=_summary(applied, quarantined, refreshed))


def _summary(applied: int, quarantined: int, refreshed: int) -> dict:
    return {"applied": applied, "quarantined": quarantined, "refreshed": refreshed}
