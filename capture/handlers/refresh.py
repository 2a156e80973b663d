"""repository-refresh: every pull request updated since the repository's refresh
watermark (or since the job's window start, for a bootstrap), captured whole (reviews,
threads, comments, files, commits), so activity on pull requests of any age lands.

The watermark, and the repository's fresh-as-of time (when the listing began), advance
only after the last of them is stored; a job with more pull requests than
CAPTURE_MAX_ITEMS splits into child jobs and advances them when all have completed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from capture import records
from capture.errors import Incomplete
from capture.fetch.collect import collect, index_page
from capture.fetch.pages import fetch_pages
from capture.fetch.rest import rest_index
from capture.handlers.base import Context, Outcome, with_rest_fallback
from capture.handlers.pulls import Listed, await_children, capture_pulls, split_into_children
from capture.records import Rows, when

ALL = {"details", "reviews", "comments"}
BOOTSTRAP = timedelta(days=30)  # without a watermark or a window: the last 30 days


def run(ctx: Context) -> Outcome:
    if (ctx.cursor or "").startswith("children"):
        outcome = await_children(ctx)
        if outcome.wait_until is None:
            _, newest, listed = ctx.cursor.split("|")
            ctx.storage.refreshed(ctx.job.repository, when(newest or None), when(listed))
        return outcome
    return with_rest_fallback(ctx, _refresh)


def _refresh(ctx: Context) -> Outcome:
    job = ctx.job
    if job.pr_numbers:  # a child of a large refresh: its pull requests, whole
        return capture_pulls(ctx, sorted(job.pr_numbers), ALL)
    listed_at = ctx.now()
    bound = job.since or ctx.storage.refresh_watermark(job.repository)
    bound = bound or listed_at - BOOTSTRAP
    numbers, newest, listed = list_updated(ctx, bound)
    # Everything updated since `bound` was listed: the watermark is at least the bound (a
    # bootstrap's history before it is the backfill's), so a probe compares against it.
    newest = max(newest, bound) if newest else bound
    if len(numbers) > ctx.settings.max_items and job.parent_id is None:
        if listed is not None:
            ctx.storage.write(listed.rows)
        cursor = f"children|{_iso(newest) or ''}|{listed_at.isoformat()}"
        return split_into_children(ctx, numbers, cursor=cursor)
    outcome = (
        capture_pulls(ctx, numbers, ALL, labelled=not ctx.settings.force_rest, listed=listed)
        if numbers
        else Outcome(items=0, summary={"note": "nothing updated since the watermark"})
    )
    if outcome.failed_items:  # never advance past a pull request that is not stored
        ctx.checkpoint(0, len(numbers), None, note="starting over: some were not captured")
        raise Incomplete(
            f"{outcome.failed_items} of {len(numbers)} pull requests could not be captured; "
            "the watermark stays"
        )
    # Nothing to capture: the listing's rows (the repository's) go with the watermark.
    unwritten = listed.rows if listed is not None and not numbers else None
    ctx.storage.refreshed(job.repository, newest, listed_at, unwritten)
    outcome.summary |= {"since": bound.isoformat(), "watermark": _iso(newest)}
    return outcome


def list_updated(ctx: Context, bound: datetime) -> tuple[list[int], datetime | None, Listed | None]:
    """The core rows (and labels) of the pull requests updated at or after `bound`,
    newest first; returns their numbers, the newest update among them and (from GraphQL)
    what the listing showed of them, its rows not yet stored (they go with the first
    batch of pull requests, or with the watermark: one transaction fewer)."""
    job, numbers, newest, shown, listing = ctx.job, [], None, {}, Rows()
    if ctx.settings.force_rest:
        for repo, page in rest_index(ctx.gh, job.repository, "updated"):
            rows, older = Rows(repositories=[records.repository(repo)]), False
            for pr in page:
                updated = when(pr["updated_at"])
                if updated < bound:
                    older = True
                    break
                records.rest_pull(rows, pr, repo["id"])
                numbers.append(pr["number"])
                newest = max(newest, updated) if newest else updated
            ctx.storage.write(rows)
            if older:
                break
        return sorted(numbers), newest, None
    after = None
    while True:
        repo, nodes, info = index_page(ctx.gh, job.repository, after, "UPDATED_AT", "DESC")
        rows, pending, failed = Rows(repositories=[records.repository(repo)]), [], []
        older = False
        for node in nodes:
            updated = when(node["updatedAt"])
            if updated < bound:
                older = True
                break
            collect(rows, node, repo["databaseId"], pending, failed)
            numbers.append(node["number"])
            shown[node["number"]] = node["id"]
            newest = max(newest, updated) if newest else updated
        fetch_pages(ctx.gh, rows, pending, failed, ctx.settings.max_nodes)
        listing.extend(rows)
        if older or not info["hasNextPage"]:
            return sorted(numbers), newest, Listed(repo["databaseId"], shown, listing)
        after = info["endCursor"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
