"""Comment activity across a repository, from GitHub's repository-level REST listings of
issue and review comments. GitHub's docs do not say whether editing or deleting a
comment moves its pull request's `updatedAt`; where it does not, a probe of pull requests
and a refresh of those updated miss the edit. These listings see it on any pull request:

- `newest_comment`: the newest update among them (sort=updated, per_page=1), two
  conditional reads that cost nothing while nothing changed (GitHub answers 304);
- `commented_since`: the pull requests whose comments were created or edited since a
  time (since=, every page), which a refresh then captures whole (deletions with them)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from capture.github.client import GitHub
from capture.records import when

LISTINGS = ("issues/comments", "pulls/comments")
# An issue comment's page is /pull/N#... on a pull request, /issues/N#... on an issue.
ON_PULL = re.compile(r"/pull/(\d+)(?:#|$)")
PULL_URL = re.compile(r"/pulls/(\d+)$")


def newest_comment(gh: GitHub, repository: str) -> datetime | None:
    """The newest creation or edit among the repository's issue and review comments."""
    newest = None
    for listing in LISTINGS:
        page = gh.rest.get(
            f"/repos/{repository}/{listing}",
            {"sort": "updated", "direction": "desc", "per_page": 1},
        )
        for item in page[:1]:
            at = when(item.get("updated_at"))
            newest = max(newest, at) if newest and at else (at or newest)
    return newest


def pull_number(comment: dict) -> int | None:
    """The pull request a listed comment is on (None: an issue's comment)."""
    found = PULL_URL.search(comment.get("pull_request_url") or "")
    found = found or ON_PULL.search(comment.get("html_url") or "")
    return int(found.group(1)) if found else None


def commented_since(
    gh: GitHub, repository: str, since: datetime
) -> tuple[dict[int, datetime | None], datetime | None]:
    """The pull requests with comments created or edited at or after `since`, each with
    its newest such update, and the newest update of all."""
    numbers: dict[int, datetime | None] = {}
    newest = None
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for listing in LISTINGS:
        path = f"/repos/{repository}/{listing}"
        for page in gh.rest.pages(path, {"since": stamp}, conditional=False):
            for item in page:
                at = when(item.get("updated_at"))
                number = pull_number(item)
                if number is not None:
                    seen = numbers.get(number)
                    numbers[number] = max(seen, at) if seen and at else (at or seen)
                newest = max(newest, at) if newest and at else (at or newest)
    return numbers, newest
