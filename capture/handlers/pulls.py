"""pr-details, pr-reviews, pr-comments and historical-sync: pull requests, whole.

Each finds its pull requests (given numbers, or an index pass over the window), splits
lists longer than CAPTURE_MAX_ITEMS into child jobs, then fetches them by node id in
nested GraphQL queries (or through REST), one stored transaction and checkpoint per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from capture import records
from capture.errors import ItemsFailed, NotFound
from capture.fetch.collect import (
    NUMBERS_PER_QUERY,
    Planner,
    by_ids,
    collect,
    index_page,
    numbers_query,
)
from capture.fetch.pages import fetch_pages
from capture.fetch.rest import fetch_rest_pull, rest_fallback, rest_index
from capture.fetch.shape import Observed, Plan
from capture.handlers.base import Context, Outcome, with_rest_fallback
from capture.jobtypes import PULL_REQUEST_PARTS
from capture.records import Rows, when
from jobstore import GITHUB_EPOCH, JobSpec, Route

log = logging.getLogger(__name__)
PARTS = PULL_REQUEST_PARTS
# A parent's looks at its child jobs: a minute after the split, then twice as long each
# time up to WAIT_MAX (the last child to end wakes it at once; a look is the safety net,
# and on Actions each look is a workflow run of its own).
WAIT = timedelta(seconds=60)
WAIT_MAX = timedelta(minutes=30)
REST_BATCH = 10


def index_window(
    ctx: Context, since: datetime, until: datetime, first: tuple | None = None
) -> list[int]:
    """Stores the core rows (and labels) of the window's pull requests; returns their
    numbers. `first`: the index's first page, already read."""
    job, numbers = ctx.job, []
    recent = until > ctx.now() - timedelta(days=365)
    if ctx.settings.force_rest:
        for repo, page in rest_index(ctx.gh, job.repository, "created"):
            rows = Rows(repositories=[records.repository(repo)])
            older = False
            for pr in page:
                created = when(pr["created_at"])
                older = created < since
                if since <= created < until:
                    records.rest_pull(rows, pr, repo["id"])
                    numbers.append(pr["number"])
            ctx.storage.write(rows)
            if older:
                break
        return sorted(numbers)
    after = None
    while True:
        repo, nodes, info = first or index_page(
            ctx.gh, job.repository, after, "CREATED_AT", "DESC" if recent else "ASC"
        )
        first = None
        rows, pending, failed, past = Rows(repositories=[records.repository(repo)]), [], [], False
        for node in nodes:
            created = when(node["createdAt"])
            past = created < since if recent else created >= until
            if past:
                break
            if since <= created < until:
                collect(rows, node, repo["databaseId"], pending, failed)
                numbers.append(node["number"])
        fetch_pages(ctx.gh, rows, pending, failed, ctx.settings.max_nodes)
        ctx.storage.write(rows)
        if past or not info["hasNextPage"]:
            return sorted(numbers)
        after = info["endCursor"]


def targets(ctx: Context, first: tuple | None = None) -> list[int]:
    job = ctx.job
    if job.pr_numbers:
        return sorted(job.pr_numbers)
    since = job.since or GITHUB_EPOCH
    until = job.until or ctx.now() + timedelta(seconds=1)
    numbers = index_window(ctx, since, until, first)
    if job.job_type == "pr-details":
        missing = ctx.storage.pulls_in_window(job.repository, since, until, missing_details=True)
        numbers = [n for n in numbers if n in missing]
    return numbers


def split_into_children(
    ctx: Context, numbers: list[int], cursor: str = "children", ranged: bool = False
) -> Outcome:
    """Child jobs of at most CAPTURE_MAX_ITEMS pull requests each, on this job's lane,
    the newest pull requests first; the job waits for them at `cursor`. `ranged`: the
    numbers are a range, not known pull requests (each child says its range and skips
    the numbers that are not pull requests)."""
    job, size = ctx.job, ctx.settings.max_items
    numbers = sorted(numbers, reverse=True)
    chunks = [numbers[i : i + size] for i in range(0, len(numbers), size)]
    specs = [
        JobSpec.create(
            job.job_type,
            job.repository,
            pr_numbers=chunk,
            trigger=job.trigger,
            priority=job.priority,
            parent_id=job.id,
            params={"part": part} | ({"range": f"{chunk[-1]}-{chunk[0]}"} if ranged else {}),
        )
        for part, chunk in enumerate(chunks, start=1)
    ]
    lane = job.lane or "local"
    children = ctx.store.enqueue_many(
        specs, ctx.now(), Route(lane, "parent", f"part of {job.job_type} {job.id}")
    )
    how = f" by number, #1 to #{numbers[0]}" if ranged and numbers else ""
    ctx.checkpoint(0, len(numbers), cursor, note=f"split into {len(children)} child jobs{how}")
    return Outcome(wait_until=next_look(ctx), summary={"children": len(children)}, children=True)


def whole_history(ctx: Context) -> bool:
    """A parent historical-sync of a repository's whole history, up to the last year
    (a bootstrap's backfill): split by pull request numbers rather than indexed."""
    job = ctx.job
    return (
        job.job_type == "historical-sync"
        and not job.pr_numbers
        and job.parent_id is None
        and (job.since is None or job.since <= GITHUB_EPOCH)
        and (job.until is None or job.until > ctx.now() - timedelta(days=365))
        and not ctx.settings.force_rest
    )


def split_by_numbers(ctx: Context, newest: int) -> Outcome:
    """Child jobs over the numbers 1..`newest` (the newest pull request's). Issues share
    the numbers: a child skips those GitHub answers are not pull requests. Each child
    checkpoints on its own, so a history of 100,000 pull requests is never one long index
    pass to restart; PRs opened meanwhile above `newest` are the refreshes' work."""
    return split_into_children(ctx, list(range(1, newest + 1)), ranged=True)


def ranged(ctx: Context) -> bool:
    """A child over a range of numbers: a number that is not a pull request is skipped."""
    return isinstance(ctx.job.params.get("range"), str)


def await_children(ctx: Context) -> Outcome:
    statuses = ctx.store.heads.children(ctx.job.id)
    if any(s in ("failed", "cancelled") for s in statuses.values()):
        raise ItemsFailed(
            f"{sum(s != 'completed' for s in statuses.values())} child jobs did not complete"
        )
    if all(s == "completed" for s in statuses.values()):
        items = sum(ctx.store.get(child).items for child in statuses)
        return Outcome(items=items, summary={"children": len(statuses)})
    return Outcome(wait_until=next_look(ctx), summary={"children": len(statuses)}, children=True)


def next_look(ctx: Context) -> datetime:
    """When a parent looks at its child jobs again: WAIT after its first attempt, doubling
    with each attempt since, at most WAIT_MAX."""
    return ctx.now() + min(WAIT * 2 ** min(max(ctx.job.attempt - 1, 0), 10), WAIT_MAX)


@dataclass(frozen=True)
class Listed:
    """What an index pass showed: the repository's id, each pull request's node id, and
    its rows, not stored yet (they are written with the first batch)."""

    repo_id: int
    node_ids: dict[int, str]
    rows: Rows = field(default_factory=Rows)


def node_ids(
    ctx: Context, numbers: list[int], shown: dict[int, str] | None = None
) -> tuple[dict[int, str], list[int]]:
    """Node ids for the numbers (`shown` by a listing, else stored ones, else asked for,
    100 numbers a query); and the numbers GitHub does not know."""
    shown = shown or {}
    if all(n in shown for n in numbers):
        return {n: shown[n] for n in numbers}, []
    known = {**ctx.storage.node_ids(ctx.job.repository, numbers), **shown}
    missing = [n for n in numbers if n not in known]
    unknown = []
    for start in range(0, len(missing), NUMBERS_PER_QUERY):
        chunk = missing[start : start + NUMBERS_PER_QUERY]
        text, variables = numbers_query(ctx.job.repository, chunk)
        data, _ = ctx.gh.graphql.run(text, variables)
        repo = data["repository"]
        ctx.storage.write(Rows(repositories=[records.repository(repo)]))
        for i, number in enumerate(chunk):
            pull = repo.get(f"n{i}")
            if pull is None:  # GitHub: NOT_FOUND at repository.nI, with data
                unknown.append(number)
            else:
                known[number] = pull["id"]
    return known, unknown


def planner_for(ctx: Context) -> Planner:
    """A planner that starts from what this repository's stored pull requests show."""
    observed = Observed()
    for kind, lengths in ctx.storage.observed(ctx.job.repository).items():
        observed.counts[kind].update(lengths)
    return Planner(ceiling=ctx.settings.max_nodes, observed=observed)


def capture_pulls(
    ctx: Context,
    numbers: list[int],
    parts: set[str],
    labelled: bool = False,
    listed: Listed | None = None,
) -> Outcome:
    """The chosen parts of the pull requests, in planned batches by node id; `labelled`
    when their core rows and labels were just stored by an index pass (`listed`: what it
    showed, so nothing is read back)."""
    job = ctx.job
    numbers = sorted(numbers)
    start = resume_at(ctx.cursor, numbers)
    todo = [n for n in numbers if n >= start]
    failed_items, done = 0, len(numbers) - len(todo)
    if ctx.settings.force_rest:
        return _rest(ctx, numbers, todo, parts)
    ids, unknown = node_ids(ctx, todo, listed.node_ids if listed else None)
    skipped = len(unknown) if ranged(ctx) else 0  # issues' numbers, in a range
    failed_items += len(unknown) - skipped
    repo_id = listed.repo_id if listed else ctx.storage.repository_id(job.repository)
    chosen = [(n, ids[n]) for n in todo if n in ids]
    wanted = parts if labelled else parts | {"labels"}
    planner = planner_for(ctx)
    shapes: list[str] = []

    def planned(plan: Plan) -> None:
        """A fallback may spend `rest_factor` times what GraphQL is expected to."""
        if not shapes or shapes[-1] != plan.shape.describe():
            shapes.append(plan.shape.describe())
        estimate = ctx.gh.meter.graphql_points + plan.points_per_pr * len(chosen)
        cap = max(ctx.settings.rest_floor, round(ctx.settings.rest_factor * estimate))
        why = f"{ctx.settings.rest_factor}x the GraphQL estimate of {estimate:.0f} points"
        ctx.gh.rest.limit(cap, why)

    unwritten = listed.rows if listed is not None else Rows()
    for batch in by_ids(ctx.gh, chosen, wanted, repo_id, planner, ctx.settings.batch_size, planned):
        failed = rest_fallback(ctx.gh, job.repository, batch.failed, repo_id, batch.rows)
        failed_items += len(failed)
        unwritten.extend(batch.rows)  # the listing's rows first, then the batch's
        ctx.storage.write(unwritten)
        unwritten = Rows()
        done = sum(n <= batch.last for n in numbers)
        note = f"{failed_items} failed" if failed_items else ""
        ctx.checkpoint(
            done,
            len(numbers),
            f"details:#{batch.last + 1}",
            note=note,
            recorded=done < len(numbers),  # the last batch's is the job's ending event
        )
    if not unwritten.is_empty():  # no batch went out (nothing left, or none known)
        ctx.storage.write(unwritten)
    done = len(numbers)
    return Outcome(
        items=done - failed_items - skipped,
        failed_items=failed_items,
        summary={
            "failed_items": failed_items,
            "fallbacks": ctx.gh.meter.fallbacks,
            "shapes": shapes,
        }
        | ({"not_pull_requests": skipped} if skipped else {}),
    )


def capture_details_across(ctx: Context, pulls: list[tuple[int, int, str]]) -> set[tuple[int, int]]:
    """Files, commits and labels of stored pull requests of several repositories, given
    as (repository id, number, node id), in as few nodes(ids:) queries as the planner
    allows (GitHub charges at least a point per query, whatever it holds). Returns the
    (repository id, number) that failed: their own repository's job captures them, with
    its REST fallback."""
    if not pulls:
        return set()
    repo_of = {node_id: repo_id for repo_id, _, node_id in pulls}
    failed: set[tuple[int, int]] = set()
    chosen = [(number, node_id) for _, number, node_id in pulls]
    parts = {"details", "labels"}
    for batch in by_ids(ctx.gh, chosen, parts, repo_of, planner_for(ctx), ctx.settings.batch_size):
        numbers = {number for number, _ in batch.failed}  # by number: at worst a few more
        failed |= {(r, n) for r, n, _ in pulls if n in numbers}
        ctx.storage.write(batch.rows)
    return failed


def resume_at(cursor: str | None, numbers: list[int]) -> int:
    """The first pull request number left to do: `details:#N` (every number below N is
    done), or an older cursor's offset into the sorted numbers."""
    text = (cursor or "").removeprefix("details:")
    if not (cursor or "").startswith("details:") or not text:
        return 0
    if text.startswith("#"):
        return int(text[1:])
    offset = int(text)
    return numbers[offset] if offset < len(numbers) else (numbers[-1] + 1 if numbers else 0)


def _rest(ctx: Context, numbers: list[int], todo: list[int], parts: set[str]) -> Outcome:
    job = ctx.job
    repo = ctx.gh.rest.get(f"/repos/{job.repository}")
    repo_row = records.repository(repo)
    failed_items = skipped = 0
    for i in range(0, len(todo), REST_BATCH):
        rows = Rows(repositories=[repo_row])
        chunk = todo[i : i + REST_BATCH]
        for number in chunk:
            try:
                fetch_rest_pull(ctx.gh, job.repository, number, parts, repo_row["id"], rows)
            except NotFound:
                if ranged(ctx):
                    skipped += 1  # an issue's number, in a range
                else:
                    failed_items += 1
        ctx.storage.write(rows)
        done = sum(n <= chunk[-1] for n in numbers)
        ctx.checkpoint(done, len(numbers), f"details:#{chunk[-1] + 1}")
    done = len(numbers)
    return Outcome(
        items=done - failed_items - skipped,
        failed_items=failed_items,
        summary={"failed_items": failed_items, "path": "rest"}
        | ({"not_pull_requests": skipped} if skipped else {}),
    )


def run(ctx: Context) -> Outcome:
    if (ctx.cursor or "").startswith("children"):
        return await_children(ctx)
    return with_rest_fallback(ctx, _run)


def _run(ctx: Context) -> Outcome:
    first = None
    if whole_history(ctx):  # its first page says how large the history is
        first = index_page(ctx.gh, ctx.job.repository, None, "CREATED_AT", "DESC")
        repo, nodes, _ = first
        if nodes and repo["pullRequests"]["totalCount"] > ctx.settings.max_items:
            return split_by_numbers(ctx, max(node["number"] for node in nodes))
    numbers = targets(ctx, first)
    if len(numbers) > ctx.settings.max_items and ctx.job.parent_id is None:
        return split_into_children(ctx, numbers)
    if not numbers:
        return Outcome(items=0, summary={"note": "no pull requests in the window"})
    indexed = not ctx.job.pr_numbers and not ctx.settings.force_rest
    return capture_pulls(ctx, numbers, set(PARTS[ctx.job.job_type]), labelled=indexed)
