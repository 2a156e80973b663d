"""Fetching pull requests through REST: the listing, one pull request's parts, and the
fallback for the parts GraphQL could not serve (which the REST client caps)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from capture import records
from capture.errors import CaptureError, RateLimited
from capture.github.client import GitHub
from capture.records import Rows

log = logging.getLogger(__name__)
PART_OF = {
    "thread_comments": "comments",
    "threads": "comments",
    "labels": "details",
    "files": "details",
    "commits": "details",
}


def rest_index(gh: GitHub, repository: str, sort: str) -> Iterator[tuple[dict, list[dict]]]:
    """Pages of pull requests, newest first by `sort` (created or updated)."""
    repo = gh.rest.get(f"/repos/{repository}")
    for page in gh.rest.pages(
        f"/repos/{repository}/pulls", {"state": "all", "sort": sort, "direction": "desc"}
    ):
        yield repo, page


def fetch_rest_pull(
    gh: GitHub, repository: str, number: int, parts: set[str], repo_id: int, rows: Rows
) -> None:
    """One pull request and the chosen parts of it, through REST."""
    base = f"/repos/{repository}"
    pr = gh.rest.get(f"{base}/pulls/{number}")
    pr_id = records.rest_pull(rows, pr, repo_id)
    if "details" in parts:
        records.rest_details(rows, pr)
        for page in gh.rest.pages(f"{base}/pulls/{number}/files"):
            for item in page:
                records.rest_file(rows, item, pr_id)
        for page in gh.rest.pages(f"{base}/pulls/{number}/commits"):
            for item in page:
                records.rest_commit(rows, item, pr_id)
        rows.complete_files.add(pr_id)
        rows.complete_commits.add(pr_id)
    if "reviews" in parts:
        for page in gh.rest.pages(f"{base}/pulls/{number}/reviews"):
            for item in page:
                records.rest_review(rows, item, pr_id)
        rows.complete_children.add((pr_id, "reviews"))
    if "comments" in parts:
        for page in gh.rest.pages(f"{base}/issues/{number}/comments"):
            for item in page:
                records.rest_comment(rows, item, pr_id, "issue")
        rows.complete_children.add((pr_id, "issue"))
        for page in gh.rest.pages(f"{base}/pulls/{number}/comments"):
            for item in page:
                records.rest_comment(rows, item, pr_id, "review")
        rows.complete_children.add((pr_id, "review"))


def rest_fallback(
    gh: GitHub, repository: str, failed: list[tuple[int, str]], repo_id: int, rows: Rows
) -> list[tuple[int, str]]:
    """Refetches failed parts through REST; returns what still failed. A rate limit, or
    the REST client's cap (FallbackCapped), is not an item's failure: the job pauses."""
    still = []
    by_number: dict[int, set[str]] = {}
    for number, kind in failed:
        by_number.setdefault(number, set()).add(PART_OF.get(kind, kind))
    for number, parts in by_number.items():
        gh.meter.fallbacks.append(f"#{number} {','.join(sorted(parts))} through REST")
        log.warning("GraphQL could not serve #%d (%s); using REST", number, ",".join(sorted(parts)))
        try:
            fetch_rest_pull(gh, repository, number, parts, repo_id, rows)
        except RateLimited:
            raise
        except CaptureError as exc:
            log.warning("REST failed too for #%d: %s", number, exc)
            still.append((number, ",".join(sorted(parts))))
    return still
