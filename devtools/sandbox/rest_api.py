"""The REST endpoints a fallback needs, with GitHub's field names, shapes and pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from devtools.sandbox import data
from devtools.sandbox.graphql_api import iso

GHOST = {"login": "ghost", "id": 10137, "node_id": "MDQ6VXNlcjEwMTM3", "type": "User"}
ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)"), "repository"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls"), "pulls"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)"), "pull"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/files"), "files"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/reviews"), "reviews"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/comments"), "review_comments"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)/commits"), "commits"),
    (re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments"), "issue_comments"),
]
STATUS = {
    "ADDED": "added",
    "DELETED": "removed",
    "MODIFIED": "modified",
    "RENAMED": "renamed",
    "COPIED": "copied",
    "CHANGED": "changed",
}


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def user(account: data.Account | None) -> dict:
    """GitHub's REST API shows deleted accounts as the `ghost` user."""
    if account is None:
        return dict(GHOST)
    return {
        "login": account.login,
        "id": account.database_id,
        "node_id": account.node_id,
        "type": account.kind,
    }


class RestApi:
    def __init__(self, world: data.World, base_url: str) -> None:
        self.world = world
        self.base_url = base_url

    def route(self, path: str) -> tuple[str, dict[str, str]] | None:
        for pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                return name, match.groupdict()
        return None

    def get(
        self, name: str, args: dict[str, str], query: dict[str, str], path: str
    ) -> tuple[Any, dict]:
        """The body and extra headers (link) for a GET; raises NotFound or BadRequest."""
        repo = self.world.repository(f"{args['o']}/{args['r']}")
        if repo is None:
            raise NotFound
        if name == "repository":
            return self.repository(repo), {}
        if name == "pulls":
            return self.page(self.pull_list(repo, query), query, path, lambda p: self.pull(repo, p))
        pr = repo.pulls.get(int(args["n"]))
        if pr is None:
            raise NotFound
        if name == "pull":
            return self.pull(repo, pr, full=True), {}
        items, render = {
            "files": (pr.files, self.file),
            "reviews": (pr.reviews, lambda r: self.review(pr, r)),
            "review_comments": (pr.review_comments, lambda c: self.comment(pr, c)),
            "commits": (pr.commits, self.commit),
            "issue_comments": (pr.comments, lambda c: self.comment(pr, c)),
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

    def repository(self, repo: data.Repository) -> dict:
        return {
            "id": repo.database_id,
            "node_id": repo.node_id,
            "name": repo.name,
            "full_name": repo.full_name,
            "private": False,
            "owner": {"login": repo.owner, "type": "Organization"},
            "html_url": f"{self.base_url}/{repo.full_name}",
            "created_at": iso(repo.created_at),
        }

    def pull(self, repo: data.Repository, pr: data.PullRequest, full: bool = False) -> dict:
        body = {
            "url": f"{self.base_url}/repos/{repo.full_name}/pulls/{pr.number}",
            "html_url": f"{self.base_url}/{repo.full_name}/pull/{pr.number}",
            "id": pr.database_id,
            "node_id": pr.node_id,
            "number": pr.number,
            "state": "open" if pr.state == "OPEN" else "closed",
            "title": pr.title,
            "body": pr.body or None,
            "user": user(pr.author),
            "labels": [
                {"id": i, "node_id": f"LA_{i}", "name": n, "color": c} for i, n, c in pr.labels
            ],
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at) if pr.closed_at else None,
            "merged_at": iso(pr.merged_at) if pr.merged_at else None,
            "merge_commit_sha": pr.merge_commit_oid,
            "draft": pr.is_draft,
            "head": {"ref": pr.head_ref, "sha": pr.head_oid},
            "base": {"ref": pr.base_ref},
        }
        if full:
            body |= {
                "merged": pr.merged_at is not None,
                "merged_by": user(pr.merged_by) if pr.merged_by else None,
                "additions": pr.additions,
                "deletions": pr.deletions,
                "changed_files": len(pr.files),
                "commits": len(pr.commits),
                "comments": len(pr.comments),
                "review_comments": len(pr.review_comments),
            }
        return body

    def file(self, f: data.File) -> dict:
        body = {
            "sha": data.sha(f.path),
            "filename": f.path,
            "status": STATUS[f.change_type],
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
        }
        if f.previous_path:
            body["previous_filename"] = f.previous_path
        return body

    def review(self, pr: data.PullRequest, r: data.Review) -> dict:
        return {
            "id": r.database_id,
            "node_id": f"PRR_{r.database_id}",
            "user": user(r.author),
            "body": r.body,
            "state": r.state,
            "commit_id": pr.head_oid,
            "submitted_at": iso(r.submitted_at) if r.submitted_at else None,
        }

    def comment(self, pr: data.PullRequest, c: data.Comment) -> dict:
        body = {
            "id": c.database_id,
            "node_id": f"{'IC' if c.path is None else 'PRRC'}_{c.database_id}",
            "user": user(c.author),
            "body": c.body,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
        }
        if c.path is not None:
            body |= {
                "path": c.path,
                "line": c.line,
                "original_line": c.original_line,
                "in_reply_to_id": c.reply_to,
                "pull_request_review_id": c.review_id,
            }
        return body

    def commit(self, c: data.Commit) -> dict:
        return {
            "sha": c.oid,
            "node_id": f"C_{c.oid}",
            "commit": {
                "message": c.message,
                "author": {
                    "name": c.author_name,
                    "email": c.author_email,
                    "date": iso(c.authored_at),
                },
                "committer": {
                    "name": c.author_name,
                    "email": c.author_email,
                    "date": iso(c.committed_at),
                },
            },
            "author": user(c.author) if c.author and c.author.kind == "User" else None,
        }
