"""The REST endpoints a fallback needs, with GitHub's field names, shapes and pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from devtools.sandbox import data
from devtools.sandbox.rest_shapes import Shapes

SUFFIXES = [
    ("", "repository"),
    ("/pulls", "pulls"),
    ("/pulls/comments", "repo_review_comments"),
    ("/issues/comments", "repo_issue_comments"),
    (r"/pulls/(?P<n>\d+)", "pull"),
    (r"/pulls/(?P<n>\d+)/files", "files"),
    (r"/pulls/(?P<n>\d+)/reviews", "reviews"),
    (r"/pulls/(?P<n>\d+)/comments", "review_comments"),
    (r"/pulls/(?P<n>\d+)/commits", "commits"),
    (r"/issues/(?P<n>\d+)/comments", "issue_comments"),
]
# By name, and by id (where GitHub's redirects for renamed repositories point).
ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(prefix + suffix), name)
    for prefix in (r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)", r"/repositories/(?P<id>\d+)")
    for suffix, name in SUFFIXES
]


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


class Moved(Exception):
    """An old name of a renamed or transferred repository: 301 to where it is now."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class RestApi:
    def __init__(self, world: data.World, base_url: str) -> None:
        self.world = world
        self.base_url = base_url

    @property
    def base_url(self) -> str:
        return self.shapes.base

    @base_url.setter
    def base_url(self, url: str) -> None:
        self.shapes = Shapes(url)

    def route(self, path: str) -> tuple[str, dict[str, str]] | None:
        for pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                return name, match.groupdict()
        return None

    def get(
        self, name: str, args: dict[str, str], query: dict[str, str], path: str
    ) -> tuple[Any, dict]:
        """The body and extra headers (link) for a GET; raises NotFound, BadRequest, or
        Moved for an old name."""
        if "id" in args:
            repo = self.world.by_id(int(args["id"]))
        else:
            repo, moved = self.world.resolve(f"{args['o']}/{args['r']}")
            if repo is not None and moved:
                rest = path.split("/", 4)[4] if path.count("/") > 3 else ""
                where = f"{self.base_url}/repositories/{repo.database_id}"
                where += f"/{rest}" if rest else ""
                raise Moved(where + (f"?{urlencode(query)}" if query else ""))
        if repo is None:
            raise NotFound
        shapes = self.shapes
        if name == "repository":
            return shapes.repository(repo, full=True), {}
        if name == "pulls":
            pulls = self.pull_list(repo, query)
            return self.page(pulls, query, path, lambda p: shapes.pull(repo, p))
        if name in ("repo_issue_comments", "repo_review_comments"):
            return self.repo_comments(repo, name, query, path)
        pr = repo.pulls.get(int(args["n"]))
        if pr is None:
            raise NotFound
        if name == "pull":
            return shapes.pull(repo, pr, full=True), {}
        items, render = {
            "files": (pr.files, lambda f: shapes.diff_entry(repo, pr, f)),
            "reviews": (pr.reviews, lambda r: shapes.review(repo, pr, r)),
            "review_comments": (pr.review_comments, lambda c: shapes.review_comment(repo, pr, c)),
            "commits": (pr.commits, lambda c: shapes.commit(repo, c)),
            "issue_comments": (pr.comments, lambda c: shapes.issue_comment(repo, pr, c)),
        }[name]
        return self.page(items, query, path, render)

    def page(
        self, items: list, query: dict[str, str], path: str, render: Callable
    ) -> tuple[list, dict]:
        try:
            per_page = int(query.get("per_page", 30))
            number = int(query.get("page", 1))
        except ValueError:
            raise BadRequest from None
        per_page = max(1, min(per_page, 100))
        number = max(1, number)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(number - 1) * per_page : number * per_page]
        links = []

        def link(page: int, rel: str) -> str:
            return f'<{self.base_url}{path}?{urlencode({**query, "page": page})}>; rel="{rel}"'

        if number > 1:
            links += [link(number - 1, "prev"), link(1, "first")]
        if number < last:
            links += [link(number + 1, "next"), link(last, "last")]
        return [render(item) for item in chunk], ({"link": ", ".join(links)} if links else {})

    def repo_comments(
        self, repo: data.Repository, name: str, query: dict[str, str], path: str
    ) -> tuple[list, dict]:
        """Every issue or review comment of the repository's pull requests (GitHub's lists
        also hold issues' comments; the sandbox has no issues), `since` an update time,
        sorted by created (default) or updated."""
        since = query.get("since")
        try:
            bound = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        except ValueError:
            raise BadRequest from None
        sort = query.get("sort", "created")
        if sort not in ("created", "updated") or query.get("direction", "asc") not in (
            "asc",
            "desc",
        ):
            raise BadRequest
        shapes, found = self.shapes, []
        for pr in repo.pulls.values():
            kind = pr.comments if name == "repo_issue_comments" else pr.review_comments
            found += [(pr, c) for c in kind if bound is None or c.updated_at >= bound]
        key = (
            (lambda x: (x[1].created_at, x[1].database_id))
            if sort == "created"
            else (lambda x: (x[1].updated_at, x[1].database_id))
        )
        found.sort(key=key, reverse=query.get("direction", "asc") == "desc")
        if name == "repo_issue_comments":
            return self.page(found, query, path, lambda x: shapes.issue_comment(repo, *x))
        return self.page(found, query, path, lambda x: shapes.review_comment(repo, *x))

    def pull_list(self, repo: data.Repository, query: dict[str, str]) -> list:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise BadRequest
        sort = query.get("sort", "created")
        if sort not in ("created", "updated", "popularity", "long-running"):
            raise BadRequest
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        found = [
            p
            for p in repo.pulls.values()
            if state == "all" or (p.state == "OPEN") == (state == "open")
        ]
        key = {
            "created": lambda p: (p.created_at, p.number),
            "updated": lambda p: (p.updated_at, p.number),
            "popularity": lambda p: (len(p.comments), p.number),
            "long-running": lambda p: ((p.closed_at or self.world.now) - p.created_at, p.number),
        }[sort]
        return sorted(found, key=key, reverse=direction == "desc")
