"""repository-refresh: every pull request updated since the repository's refresh
watermark (or since the job's window start, for a bootstrap), captured whole (reviews,
threads, comments, files, commits), so activity on pull requests of any age lands.

The watermark, and the repository's fresh-as-of time (when the listing began), advance
only after the last of them is stored; a job with more pull requests than
CAPTURE_MAX_ITEMS splits into child jobs and advances them when all have completed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from capture import records
from capture.errors import CaptureError, Incomplete, RequestRefused
from capture.fetch.collect import collect, index_page
from capture.fetch.comments import commented_since
from capture.fetch.pages import fetch_pages
from capture.fetch.rest import rest_index
from capture.handlers.base import Context, Outcome, with_rest_fallback
from capture.handlers.pulls import Listed, await_children, capture_pulls, split_into_children
from capture.records import Rows, when
from capture.storage import EDITS_MOVE_NOTHING

log = logging.getLogger(__name__)
ALL = {"details", "reviews", "comments"}
CHILDREN = {"reviews", "comments"}  # what a reconciliation compares
BOOTSTRAP = timedelta(days=30)  # without a watermark or a window: the last 30 days
RECONCILE_MAX = 100  # pull requests a reconciliation captures whole, most recently active


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
    if "reconcile" in job.params:
        days = job.params["reconcile"]
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
            raise RequestRefused(f"params.reconcile must be 1 to 90 days, got {days!r}")
        return _reconcile(ctx, days)
    listed_at = ctx.now()
    given = job.params.get("comments_since")
    if job.since and isinstance(given, str):  # the planner read both watermarks
        watermark, comments_since = None, _parsed(given)
    else:
        watermark, comments_since = ctx.storage.refresh_watermarks(job.repository)
    bound = job.since or watermark
    bound = bound or listed_at - BOOTSTRAP
    numbers, newest, listed = list_updated(ctx, bound)
    # Comments edited (or added) where that did not move their pull request: those
    # pull requests too, whole. Listed after the pull requests, so every comment updated
    # before `listed_at` is in one listing or the other.
    # If the listings cannot be read (REST down, its budget spent), the refresh goes on
    # without them and the comment watermark stays: the next refresh lists from it.
    since = comments_since or bound
    comments_at: datetime | None = listed_at
    try:
        # a bootstrap's first refresh: everything before it is the backfill's, whole
        bootstrap = job.params.get("bootstrap") == "recent"
        commented = {} if bootstrap else commented_since(ctx.gh, job.repository, since)[0]
    except CaptureError as exc:
        log.warning(
            "%s: comment listings not read (%s); their watermark stays", job.repository, exc
        )
        commented, comments_at = {}, None
    # A comment updated after the pull requests' bound, and before they were listed, on
    # one not listed: that did not move its pull request. (One updated before the bound
    # is listed when the comments' watermark lags the pull requests', e.g. after a
    # backfill stored them: its pull request may have moved before the bound.)
    listed_numbers = set(numbers)
    unmoved = {
        number
        for number, at in commented.items()
        if number not in listed_numbers and at is not None and bound < at < listed_at
    }
    if unmoved:  # comments changed where their pull request's updatedAt did not move
        shown = ", ".join(f"#{n}" for n in sorted(unmoved)[:5])
        ctx.storage.saw(EDITS_MOVE_NOTHING, f"{job.repository}: comments on {shown}")
    numbers = sorted(set(numbers) | set(commented))
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
    ctx.storage.refreshed(job.repository, newest, listed_at, unwritten, comments_at=comments_at)
    outcome.summary |= {"since": bound.isoformat(), "watermark": _iso(newest)}
    if commented:
        outcome.summary["commented"] = len(commented)
    return outcome


def _reconcile(ctx: Context, days: int) -> Outcome:
    """The pull requests active in the last `days` days, captured whole: what GitHub
    deleted without moving anything (a comment or review deleted where that does not
    bump its pull request) is marked deleted. Watermarks stay as they are."""
    numbers = ctx.storage.recently_active(
        ctx.job.repository, ctx.now() - timedelta(days=days), RECONCILE_MAX
    )
    if not numbers:
        return Outcome(items=0, summary={"note": "no pull request active", "reconciled": 0})
    outcome = capture_pulls(ctx, numbers, CHILDREN)  # files and commits are not needed
    outcome.summary["reconciled"] = len(numbers)
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


def _parsed(value: str) -> datetime | None:
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None  # not a time: the listings start at the job's window
    return found if found.tzinfo is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
