"""Fetching pull requests through GraphQL: the listing, and nested batches by node id in
the shape the planner chose, into Rows. A shape GitHub refuses (node limit, timeout) is
shrunk and sent again; only a pull request that fails alone is left for REST."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

from graphql import DocumentNode, parse

from capture import records
from capture.errors import QueryFailed, ServerError, TooHeavy
from capture.fetch.pages import CHILD_OF, Page, fetch_pages, next_page, page_nodes
from capture.fetch.shape import NODE_LIMIT, Observed, Plan, plan
from capture.github.client import GitHub
from capture.github.graphql import document
from capture.records import Rows

log = logging.getLogger(__name__)
PARTS = ("details", "reviews", "comments")
CONNECTIONS = (
    ("files", "files"),
    ("commits", "commits"),
    ("reviews", "reviews"),
    ("comments", "comments"),
    ("threads", "reviewThreads"),
    ("labels", "labels"),
)
FLOOR_NODES = 1_000  # below this a refused shape is not the shape's fault


@dataclass
class Pulls:
    """What a fetch produced: rows, the (number, part) items that failed, and the number
    of the last pull request the batch covered (they come in the order given)."""

    rows: Rows
    failed: list[tuple[int, str]]
    last: int


@dataclass
class Planner:
    """The shape of the next by-id query for one job: what the repository has shown so
    far, and how many possible nodes GitHub has been taking (halved when it refuses or
    times out, grown back after it answers)."""

    ceiling: int = 100_000
    observed: Observed = field(default_factory=Observed)
    max_nodes: int = 0
    last: Plan | None = None

    def __post_init__(self) -> None:
        self.ceiling = min(self.ceiling, NODE_LIMIT)
        self.max_nodes = self.max_nodes or self.ceiling

    def next(self, parts: set[str], counting: str, todo: int) -> Plan:
        self.last = plan(
            by_ids_document(),
            parts,
            self.observed,
            counting=counting,
            todo=todo,
            max_nodes=self.max_nodes,
        )
        return self.last

    def shrink(self, tried: Plan) -> bool:
        """Halves the node budget below what was refused; False once nothing smaller is
        worth trying."""
        if tried.shape.batch == 1 and tried.nodes <= FLOOR_NODES:
            return False
        self.max_nodes = max(1, min(self.max_nodes, tried.nodes) // 2)
        return True

    def grow(self) -> None:
        self.max_nodes = min(self.ceiling, self.max_nodes * 2)

    def learn(self, node: dict) -> None:
        """The lengths a pull request node's connections reported (totalCount)."""
        for kind, key in CONNECTIONS:
            connection = node.get(key)
            if connection and connection.get("totalCount") is not None:
                self.observed.add(kind, [connection["totalCount"]])
        for thread in (node.get("reviewThreads") or {}).get("nodes") or ():
            comments = (thread or {}).get("comments") or {}
            if comments.get("totalCount") is not None:
                self.observed.add("thread_comments", [comments["totalCount"]])


@cache
def by_ids_document() -> DocumentNode:
    """The by-id document, parsed once (the planner's cost cache is keyed by it)."""
    return parse(document("PullRequestsByIds"))


def owner_and_name(owner_name: str) -> tuple[str, str]:
    owner, name = owner_name.split("/")
    return owner, name


NUMBERS_PER_QUERY = 100


def numbers_query(repository: str, numbers: list[int]) -> tuple[str, dict]:
    """One query for the node ids of up to 100 pull requests by number (aliases n0, n1,
    ...): no connections, so 1 point for them all. The numbers are variables: the text is
    the same for every query of as many numbers (parsed, validated and costed once)."""
    owner, name = owner_and_name(repository)
    declared = "".join(f", $n{i}: Int!" for i in range(len(numbers)))
    aliases = " ".join(f"n{i}: pullRequest(number: $n{i}) {{ id }}" for i in range(len(numbers)))
    text = (
        f"query PullRequestNumbers($owner: String!, $name: String!{declared}) {{ "
        "rateLimit { cost remaining resetAt } "
        "repository(owner: $owner, name: $name) { databaseId id nameWithOwner createdAt "
        f"{aliases} }} }}"
    )
    return text, {"owner": owner, "name": name} | {f"n{i}": int(n) for i, n in enumerate(numbers)}


def query_shrinking(
    gh: GitHub, name: str, variables: Callable[[int], dict], size: int, what: str
) -> tuple[dict, int]:
    """Runs `name` for `size` items, halving `size` when GitHub times out or refuses the
    query's size; QueryFailed once even one item fails. Returns the data and the size."""
    while True:
        try:
            data, _ = gh.graphql.query(name, variables(size), retry=False)
            return data, size
        except (ServerError, TooHeavy) as exc:
            if size == 1:
                raise QueryFailed(f"GraphQL kept failing ({exc}) {what}") from None
            size = max(1, size // 2)
            log.info("GraphQL refused %s (%s): page size now %d", what, exc, size)


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
            following = next_page(connection, node["id"], kind, pr_id, number)
            if following is not None:
                pending.append(following)
            continue
        if kind == "files":
            rows.complete_files.add(pr_id)
        if kind == "commits":
            rows.complete_commits.add(pr_id)
        if kind in CHILD_OF:  # whole unless one of its pages fails (pages.incomplete)
            rows.complete_children.add((pr_id, CHILD_OF[kind]))
        page_nodes(rows, kind, connection, node["id"], pr_id, number, pending)
    if rows.unmoved is None and records.edited_after(node):
        rows.unmoved = f"repository {repo_id} #{number}: a comment updated after the PR"


def by_ids(
    gh: GitHub,
    pulls: list[tuple[int, str]],
    parts: set[str],
    repo_id: int | Mapping[str, int],
    planner: Planner,
    most: int = 100,
    on_plan: Callable[[Plan], None] | None = None,
) -> Iterator[Pulls]:
    """Pull requests, given as (number, node id), in batches shaped by `planner`. A shape
    GitHub refuses is shrunk and retried; a pull request that fails on its own is yielded
    as failed (for REST), and the batches go on. `repo_id`: their repository's id, or
    each one's by node id (one query reads pull requests of several repositories)."""
    start = 0
    while start < len(pulls):
        chosen = planner.next(parts, gh.graphql.counting.mode, min(most, len(pulls) - start))
        if on_plan is not None:
            on_plan(chosen)
        chunk = pulls[start : start + chosen.shape.batch]
        variables = {"ids": [node_id for _, node_id in chunk], **chosen.shape.variables(parts)}
        try:
            data, _ = gh.graphql.query("PullRequestsByIds", variables, retry=False)
        except (ServerError, TooHeavy) as exc:
            if isinstance(exc, TooHeavy) and exc.node_limit:
                gh.graphql.counting.refused()
            if planner.shrink(chosen):
                log.info("GraphQL refused %s (%s); shrinking", chosen.shape.describe(), exc)
                continue
            number = chunk[0][0]
            log.warning("GraphQL cannot serve #%d (%s); leaving it for REST", number, exc)
            yield Pulls(Rows(), [(number, part) for part in sorted(parts - {"labels"})], number)
            start += 1
            continue
        rows, pending, failed = Rows(), [], []
        nodes = data["nodes"]
        for i, (number, node_id) in enumerate(chunk):
            node = nodes[i] if i < len(nodes) else None
            if node is None:  # an error under a non-null field nulls the whole pull request
                log.warning("GraphQL answered nothing for #%d; leaving it for REST", number)
                failed.extend((number, part) for part in sorted(parts - {"labels"}))
                continue
            planner.learn(node)
            collect(
                rows,
                node,
                repo_id if isinstance(repo_id, int) else repo_id[node_id],
                pending,
                failed,
            )
        del data  # the rows hold what is needed; the response tree can go before the next call
        fetch_pages(gh, rows, pending, failed, planner.ceiling)
        start += len(chunk)
        planner.grow()
        yield Pulls(rows, failed, chunk[-1][0])
