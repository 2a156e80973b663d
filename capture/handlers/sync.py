"""repository-sync: pull requests created or updated in a window, or since the watermark."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from capture import records
from capture.fetch.collect import collect, index_page
from capture.fetch.pages import fetch_pages
from capture.fetch.rest import rest_index
from capture.handlers.base import Context, Outcome, with_rest_fallback
from capture.records import Rows, when


def _included(
    updated: datetime,
    created: datetime,
    since: datetime | None,
    until: datetime | None,
    watermark: datetime | None,
) -> tuple[bool, bool]:
    """(include this PR, stop here) for a listing newest-updated first."""
    if since is not None and until is not None:
        if updated < since:
            return False, True
        return since <= updated < until or since <= created < until, False
    if watermark is not None and updated <= watermark:
        return False, True
    return True, False


def repository_sync(ctx: Context) -> Outcome:
    """Core fields, author and labels of pull requests; incremental without a window."""
    return with_rest_fallback(ctx, _sync)


def _sync(ctx: Context) -> Outcome:
    job = ctx.job
    watermark = None if job.since else ctx.storage.watermark(job.repository)
    after, newest = None, watermark
    if ctx.cursor and ctx.cursor.startswith("sync:"):
        after_text, _, newest_text = ctx.cursor.removeprefix("sync:").partition("|")
        after, newest = after_text or None, when(newest_text) if newest_text else newest
    done = job.done
    pages = _rest_pages(ctx) if ctx.settings.force_rest else None
    while True:
        rows, pending, failed, stop = Rows(), [], [], False
        if pages is None:
            repo, nodes, info = index_page(ctx.gh, job.repository, after, "UPDATED_AT", "DESC")
            repo_row = records.repository(repo)
        else:
            repo_row, nodes, info = next(pages, (None, [], {"hasNextPage": False}))
            if repo_row is None:
                break
        rows.repositories.append(repo_row)
        for node in nodes:
            updated = when(node.get("updatedAt") or node.get("updated_at"))
            created = when(node.get("createdAt") or node.get("created_at"))
            include, stop = _included(updated, created, job.since, job.until, watermark)
            if stop:
                break
            if include:
                newest = max(newest, updated) if newest else updated
                if pages is None:
                    collect(rows, node, repo_row["id"], pending, failed)
                else:
                    records.rest_pull(rows, node, repo_row["id"])
        fetch_pages(ctx.gh, rows, pending, failed, ctx.settings.max_nodes)
        last = stop or not info["hasNextPage"]
        mark = (job.repository.lower(), newest) if (job.since is None and last and newest) else None
        ctx.storage.write(rows, watermark=mark)
        done += len(rows.pull_requests)
        after = info.get("endCursor")
        ctx.checkpoint(done, None, f"sync:{after or ''}|{newest.isoformat() if newest else ''}")
        if last:
            break
    return Outcome(items=done, summary={"watermark": newest.isoformat() if newest else None})


def _rest_pages(ctx: Context) -> Iterator[tuple[dict, list[dict], dict]]:
    for repo, page in rest_index(ctx.gh, ctx.job.repository, "updated"):
        yield records.repository(repo), page, {"hasNextPage": True}
