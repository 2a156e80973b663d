"""Fetching pull requests through GraphQL (nested, by node id) or REST, into Rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from capture import records
from capture.errors import CaptureError, QueryFailed, ServerError
from capture.github.client import GitHub
from capture.records import Rows

log = logging.getLogger(__name__)
PARTS = ("details", "reviews", "comments")
# kind -> (GraphQL type, field, fragment on the node type, extra fields on the connection)
PAGES = {
    "files": ("PullRequest", "files", "FileFields", ""),
    "commits": ("PullRequest", "commits", "CommitFields", "totalCount"),
    "reviews": ("PullRequest", "reviews", "ReviewFields", ""),
    "comments": ("PullRequest", "comments", "IssueCommentFields", ""),
    "threads": ("PullRequest", "reviewThreads", "ThreadFields", ""),
    "labels": ("PullRequest", "labels", "LabelName", ""),
    "thread_comments": ("PullRequestReviewThread", "comments", "ReviewCommentFields", ""),
}
CONNECTIONS = (
    ("files", "files"),
    ("commits", "commits"),
    ("reviews", "reviews"),
    ("comments", "comments"),
    ("threads", "reviewThreads"),
    ("labels", "labels"),
)
PAGE_BATCH = 50


@dataclass(frozen=True)
class Page:
    """The next page of one connection of one node."""

    node_id: str
    kind: str
    after: str | None
    pr_id: int
    number: int


@dataclass
class Pulls:
    """What a fetch produced: rows, and the (number, part) items that failed."""

    rows: Rows
    failed: list[tuple[int, str]]


def owner_and_name(owner_name: str) -> tuple[str, str]:
    owner, name = owner_name.split("/")
    return owner, name


# GraphQL.


def query_shrinking(
    gh: GitHub, name: str, variables: Callable[[int], dict], size: int, what: str
) -> tuple[dict, int]:
    """Runs `name` for `size` items, halving `size` on 502/504 (GitHub's advice for heavy
    queries); QueryFailed once even one item fails. Returns the data and the size used."""
    while True:
        try:
            data, _ = gh.graphql.query(name, variables(size), retry=False)
            return data, size
        except ServerError as exc:
            if size == 1:
                raise QueryFailed(f"GraphQL kept failing (HTTP {exc.status}) {what}") from None
            size = max(1, size // 2)
            log.info("GraphQL %s while %s: page size now %d", exc.status, what, size)


def index_page(
    gh: GitHub, repository: str, after: str | None, field: str, direction: str, first: int = 100
) -> tuple[dict, list[dict], dict]:
    """One page of pull requests (core fields and labels): repository, nodes, pageInfo."""
    owner, name = owner_and_name(repository)
    variables = {
        "owner": owner,
        "name": name,
        "after": after,
        "field": field,
        "direction": direction,
    }
    data, _ = query_shrinking(
        gh, "RepositorySweep", lambda n: {**variables, "first": n}, first, "listing pull requests"
    )
    repo = data["repository"]
    connection = repo["pullRequests"]
    return repo, connection["nodes"], connection["pageInfo"]


def collect(rows: Rows, node: dict, repo_id: int, pending: list[Page], failed: list) -> None:
    """Rows from one pull request node; next pages go to `pending`, failed parts to `failed`."""
    pr_id = records.gql_pull(rows, node, repo_id)
    number = node["number"]
    if "additions" in node:
        records.gql_details(rows, node)
    for kind, key in CONNECTIONS:
        if key not in node:
            continue
        connection = node[key]
        if connection is None:  # a partial error on this part of this pull request
            failed.append((number, "details" if kind in ("files", "commits") else kind))
            continue
        if kind == "labels":
            if connection["pageInfo"]["hasNextPage"]:
                pending.append(
                    Page(node["id"], kind, connection["pageInfo"]["endCursor"], pr_id, number)
                )
            continue
        if kind == "files":
            rows.complete_files.add(pr_id)
        if kind == "commits":
            rows.complete_commits.add(pr_id)
        page_nodes(rows, kind, connection, node["id"], pr_id, number, pending)


def page_nodes(
    rows: Rows,
    kind: str,
    connection: dict,
    node_id: str,
    pr_id: int,
    number: int,
    pending: list[Page],
) -> None:
    for item in connection["nodes"]:
        if kind == "files":
            records.gql_file(rows, item, pr_id)
        elif kind == "commits":
            records.gql_commit(rows, item, pr_id)
        elif kind == "reviews":
            records.gql_review(rows, item, pr_id)
        elif kind == "comments":
            records.gql_comment(rows, item, pr_id, "issue")
        elif kind == "thread_comments":
            records.gql_comment(rows, item, pr_id, "review")
        elif kind == "threads":
            page_nodes(
                rows, "thread_comments", item["comments"], item["id"], pr_id, number, pending
            )
    if connection["pageInfo"]["hasNextPage"]:
        pending.append(Page(node_id, kind, connection["pageInfo"]["endCursor"], pr_id, number))


def compose(pages: list[Page]) -> tuple[str, dict[str, Any]]:
    """One query fetching the next page of each connection, each under its own alias."""
    from capture.github.graphql import fragments, used_only

    params, fields, variables = [], [], {}
    for i, page in enumerate(pages):
        type_name, field, fragment, extra = PAGES[page.kind]
        params.append(f"$id{i}: ID!, $after{i}: String")
        fields.append(
            f"p{i}: node(id: $id{i}) {{ ... on {type_name} {{ {field}(first: 100, after: $after{i})"
            f" {{ {extra} pageInfo {{ hasNextPage endCursor }} nodes {{ ...{fragment} }} }} }} }}"
        )
        variables |= {f"id{i}": page.node_id, f"after{i}": page.after}
    text = (
        f"query Pages({', '.join(params)}) {{ rateLimit {{ cost remaining resetAt }} "
        f"{' '.join(fields)} }}\n" + fragments()
    )
    return used_only(text), variables


def fetch_pages(gh: GitHub, rows: Rows, pending: list[Page], failed: list) -> None:
    """Follows every pending page (and the pages they lead to) to the end."""
    while pending:
        batch, pending[:] = pending[:PAGE_BATCH], pending[PAGE_BATCH:]
        text, variables = compose(batch)
        data, _ = gh.graphql.run(text, variables)
        for i, page in enumerate(batch):
            node = data.get(f"p{i}")
            field = PAGES[page.kind][1]
            if not node or node.get(field) is None:
                failed.append((page.number, page.kind))
                continue
            if page.kind == "labels":
                pr = next(p for p in rows.pull_requests if p["id"] == page.pr_id)
                pr["labels"] = sorted(pr["labels"] + [n["name"] for n in node[field]["nodes"]])
                if node[field]["pageInfo"]["hasNextPage"]:
                    pending.append(
                        Page(
                            page.node_id,
                            "labels",
                            node[field]["pageInfo"]["endCursor"],
                            page.pr_id,
                            page.number,
                        )
                    )
                continue
            page_nodes(rows, page.kind, node[field], page.node_id, page.pr_id, page.number, pending)


def by_ids(
    gh: GitHub, ids: list[str], parts: set[str], repo_id: int, size: int = 50
) -> Iterator[Pulls]:
    """Pull requests by node id, `size` per query (halved on 502/504, grown back after)."""
    flags = {part: part in parts for part in PARTS}
    start, full = 0, size
    while start < len(ids):
        data, size = query_shrinking(
            gh,
            "PullRequestsByIds",
            lambda n, at=start: {"ids": ids[at : at + n], **flags},
            size,
            "fetching pull requests",
        )
        chunk = ids[start : start + size]
        rows, pending, failed = Rows(), [], []
        for node in data["nodes"]:
            if node is not None:
                collect(rows, node, repo_id, pending, failed)
        del data  # the rows hold what is needed; the response tree can go before the next call
        fetch_pages(gh, rows, pending, failed)
        start += len(chunk)
        size = min(full, size * 2)
        yield Pulls(rows, failed)


# REST.


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
    if "comments" in parts:
        for page in gh.rest.pages(f"{base}/issues/{number}/comments"):
            for item in page:
                records.rest_comment(rows, item, pr_id, "issue")
        for page in gh.rest.pages(f"{base}/pulls/{number}/comments"):
            for item in page:
                records.rest_comment(rows, item, pr_id, "review")


def rest_fallback(
    gh: GitHub, repository: str, failed: list[tuple[int, str]], repo_id: int, rows: Rows
) -> list[tuple[int, str]]:
    """Refetches failed parts through REST; returns what still failed."""
    still = []
    by_number: dict[int, set[str]] = {}
    for number, kind in failed:
        part = {
            "thread_comments": "comments",
            "threads": "comments",
            "labels": "details",
            "files": "details",
            "commits": "details",
        }.get(kind, kind)
        by_number.setdefault(number, set()).add(part)
    for number, parts in by_number.items():
        gh.meter.fallbacks.append(f"#{number} {','.join(sorted(parts))} through REST")
        log.warning("GraphQL could not serve #%d (%s); using REST", number, ",".join(sorted(parts)))
        try:
            fetch_rest_pull(gh, repository, number, parts, repo_id, rows)
        except CaptureError as exc:
            log.warning("REST failed too for #%d: %s", number, exc)
            still.append((number, ",".join(sorted(parts))))
    return still
