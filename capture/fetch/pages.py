"""Follow-up pages: the rest of every connection longer than its page in the batch query,
composed into aliased queries that stay under the node limit, followed to the end."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from capture import records
from capture.errors import ServerError, TooHeavy
from capture.github.client import GitHub
from capture.github.cost import PAGE_LIMIT
from capture.github.graphql import fragments, used_only
from capture.records import Rows

# kind -> (GraphQL type, field, fragment on the node type, extra fields on the connection)
PAGES = {
    "files": ("PullRequest", "files", "FileFields", ""),
    "commits": ("PullRequest", "commits", "CommitFields", "totalCount"),
    "reviews": ("PullRequest", "reviews", "ReviewFields", ""),
    "comments": ("PullRequest", "comments", "IssueCommentFields", ""),
    "threads": ("PullRequest", "reviewThreads", "", ""),
    "labels": ("PullRequest", "labels", "LabelName", ""),
    "thread_comments": ("PullRequestReviewThread", "comments", "ReviewCommentFields", ""),
}
# A connection's kind -> the kind of child whose whole list it is part of (Rows.complete_children)
CHILD_OF = {
    "reviews": "reviews",
    "comments": "issue",
    "threads": "review",
    "thread_comments": "review",
}
log = logging.getLogger(__name__)
MAX_ALIASES = 100
THREAD_COMMENTS = 100  # comments fetched with each review thread of a follow-up page


@dataclass(frozen=True)
class Page:
    """The next page of one connection of one node; `left` items remain when known. At
    most `size` items are asked for (and `inner` comments of each thread of a page of
    review threads): both are halved when GitHub refuses the page alone."""

    node_id: str
    kind: str
    after: str | None
    pr_id: int
    number: int
    left: int | None = None
    size: int = PAGE_LIMIT
    inner: int = THREAD_COMMENTS

    @property
    def first(self) -> int:
        return max(1, min(self.size, self.left if self.left is not None else PAGE_LIMIT))

    def weight(self) -> tuple[int, int]:
        """(requests, possible nodes) of this page as one alias of a composed query."""
        if self.kind == "threads":  # each thread of the page fills its comments too
            return 1 + self.first, self.first * (1 + self.inner)
        return 1, self.first

    def smaller(self) -> Page | None:
        """The same page asking for less, or None when it cannot ask for less."""
        if self.first > 1:
            return replace(self, size=self.first // 2)
        if self.kind == "threads" and self.inner > 1:
            return replace(self, inner=self.inner // 2)
        return None


def next_page(connection: dict, node_id: str, kind: str, pr_id: int, number: int) -> Page | None:
    """The follow-up of a connection just read, or None when it is complete."""
    info = connection["pageInfo"]
    if not info["hasNextPage"]:
        return None
    total = connection.get("totalCount")
    left = None if total is None else max(1, total - len(connection["nodes"]))
    return Page(node_id, kind, info["endCursor"], pr_id, number, left)


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
    following = next_page(connection, node_id, kind, pr_id, number)
    if following is not None:
        pending.append(following)


def compose(pages: list[Page]) -> tuple[str, dict[str, Any]]:
    """One query fetching the next page of each connection, each under its own alias."""
    params, fields, variables = [], [], {}
    for i, page in enumerate(pages):
        type_name, field, fragment, extra = PAGES[page.kind]
        params.append(f"$id{i}: ID!, $after{i}: String")
        if page.kind == "threads":
            nodes = (
                f"id comments(first: {page.inner}) {{ totalCount pageInfo "
                "{ hasNextPage endCursor } nodes { ...ReviewCommentFields } }"
            )
        else:
            nodes = f"...{fragment}"
        fields.append(
            f"p{i}: node(id: $id{i}) {{ ... on {type_name} {{ {field}(first: {page.first}, "
            f"after: $after{i}) {{ totalCount {extra} pageInfo {{ hasNextPage endCursor }} "
            f"nodes {{ {nodes} }} }} }} }}"
        )
        variables |= {f"id{i}": page.node_id, f"after{i}": page.after}
    text = (
        f"query Pages({', '.join(params)}) {{ rateLimit {{ cost remaining resetAt }} "
        f"{' '.join(fields)} }}\n" + fragments()
    )
    return used_only(text.replace("totalCount totalCount", "totalCount")), variables


def take(pending: list[Page], max_nodes: int) -> list[Page]:
    """The next pages to send together: at most MAX_ALIASES, under `max_nodes`."""
    batch, nodes = [], 0
    while pending and len(batch) < MAX_ALIASES:
        weight = pending[0].weight()[1]
        if batch and nodes + weight > max_nodes:
            break
        batch.append(pending.pop(0))
        nodes += weight
    return batch


def fetch_pages(
    gh: GitHub, rows: Rows, pending: list[Page], failed: list, max_nodes: int = 100_000
) -> None:
    """Follows every pending page (and the pages they lead to) to the end."""
    budget = max_nodes
    while pending:
        batch = take(pending, budget)
        text, variables = compose(batch)
        try:  # a refused pack is split; a refused lone page asks for less
            data, _ = gh.graphql.run(text, variables, retry=False)
        except (ServerError, TooHeavy) as exc:
            if len(batch) == 1:
                smaller = batch[0].smaller()
                if smaller is None:
                    failed.append((batch[0].number, batch[0].kind))
                    incomplete(rows, batch[0])
                else:
                    pending.insert(0, smaller)
                continue
            pending[:0] = batch
            budget = max(1, sum(page.weight()[1] for page in batch) // 2)
            log.info("GraphQL refused %d follow-up pages (%s); sending fewer", len(batch), exc)
            continue
        budget = min(max_nodes, budget * 2)
        for i, page in enumerate(batch):
            node = data.get(f"p{i}")
            field = PAGES[page.kind][1]
            if not node or node.get(field) is None:
                failed.append((page.number, page.kind))
                incomplete(rows, page)
                continue
            connection = node[field]
            if page.kind == "labels":
                pr = next(p for p in rows.pull_requests if p["id"] == page.pr_id)
                pr["labels"] = sorted(pr["labels"] + [n["name"] for n in connection["nodes"]])
                following = next_page(connection, page.node_id, "labels", page.pr_id, page.number)
                if following is not None:
                    pending.append(following)
                continue
            page_nodes(rows, page.kind, connection, page.node_id, page.pr_id, page.number, pending)


def incomplete(rows: Rows, page: Page) -> None:
    """A page that could not be read: its pull request's list of that kind is not whole."""
    kind = CHILD_OF.get(page.kind)
    if kind is not None:
        rows.complete_children.discard((page.pr_id, kind))
