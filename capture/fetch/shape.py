"""The query planner: the shape of the next by-id query (pull requests per query, page
size of each connection) chosen before sending it; pure.

The shape must stay under GitHub's node limit under the counting the server is believed
to use, and should spend as few points as possible on the pull requests at hand. What a
shape spends is the batch query's cost (computed from the document with GitHub's rules)
plus the follow-up pages that the connections longer than their page will need, expected
from what this repository has shown so far (a histogram per connection kind).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from graphql import DocumentNode

from capture.github.cost import NODE_LIMIT, PAGE_LIMIT, query_cost

# Connection kinds of a pull request, and of a review thread (thread_comments).
KINDS = ("labels", "files", "commits", "reviews", "comments", "threads", "thread_comments")
PART_KINDS = {
    "labels": ("labels",),
    "details": ("files", "commits"),
    "reviews": ("reviews",),
    "comments": ("comments", "threads", "thread_comments"),
}
VARIABLE = {
    "labels": "labelPage",
    "files": "filePage",
    "commits": "commitPage",
    "reviews": "reviewPage",
    "comments": "commentPage",
    "threads": "threadPage",
    "thread_comments": "threadCommentPage",
}
BATCHES = (100, 50, 25, 10, 5, 2, 1)
THREAD_PAGES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 100)
LEAF_PAGES = (100, 25, 5, 1)
# What a repository is assumed to look like before it has shown anything: a weak prior
# (a few pseudo-observations) shaped like GitHub's public repositories, long tail included.
PRIOR: dict[str, dict[int, float]] = {
    "labels": {0: 2, 1: 2, 3: 1},
    "files": {1: 1, 3: 1, 6: 1, 15: 1, 150: 0.05},
    "commits": {1: 2, 3: 1, 8: 1, 150: 0.05},
    "reviews": {0: 1, 1: 2, 3: 1, 150: 0.05},
    "comments": {0: 1, 2: 2, 5: 1, 150: 0.05},
    "threads": {0: 2, 1: 1, 3: 1, 150: 0.05},
    "thread_comments": {1: 2, 2: 1, 4: 1, 150: 0.05},
}


@dataclass
class Observed:
    """How long each kind of connection has been, per pull request (per thread for
    thread_comments): a histogram, seeded with the prior."""

    counts: dict[str, Counter] = field(
        default_factory=lambda: {kind: Counter(PRIOR[kind]) for kind in KINDS}
    )

    def add(self, kind: str, lengths: Iterable[int]) -> None:
        self.counts[kind].update(int(n) for n in lengths)

    def mean(self, kind: str, value: callable) -> float:  # type: ignore[valid-type]
        """The expected value of `value(length)` over what was seen."""
        histogram = self.counts[kind]
        total = sum(histogram.values())
        return sum(value(n) * times for n, times in histogram.items()) / total

    def seen(self) -> int:
        """Pull requests observed beyond the prior."""
        return sum(self.counts["files"].values()) - sum(PRIOR["files"].values())


@dataclass(frozen=True)
class Shape:
    """Pull requests per query and the page size of each connection kind fetched."""

    batch: int
    pages: Mapping[str, int]

    def variables(self, parts: Iterable[str]) -> dict[str, object]:
        """The by-id document's flags and page sizes (unfetched kinds get 1, unused)."""
        chosen = set(parts)
        flags = {part: part in chosen for part in PART_KINDS}
        return flags | {VARIABLE[kind]: self.pages.get(kind, 1) for kind in KINDS}

    def describe(self) -> str:
        pages = " ".join(f"{kind}={size}" for kind, size in self.pages.items())
        return f"{self.batch} per query, {pages}"


@dataclass(frozen=True)
class Plan:
    shape: Shape
    counting: str
    nodes: int
    batch_points: int
    points_per_pr: float  # the batch's points per pull request plus expected follow-ups


def followup_requests(kind: str, page: int, observed: Observed) -> float:
    """Expected follow-up requests per pull request for one connection kind fetched with
    `page` items in the batch query. A follow-up page of a plain connection is one request
    (up to 100 items); a page of review threads also fills each thread's comments, one
    request per thread; a thread's further comments are one request per 100."""
    if kind == "threads":
        return observed.mean(kind, lambda n: math.ceil(max(0, n - page) / PAGE_LIMIT))
    if kind == "thread_comments":
        per_thread = observed.mean(kind, lambda n: math.ceil(max(0, n - page) / PAGE_LIMIT))
        threads = observed.mean("threads", lambda n: n)
        return per_thread * threads
    return observed.mean(kind, lambda n: math.ceil(max(0, n - page) / PAGE_LIMIT))


def threads_beyond(page: int, observed: Observed) -> float:
    """Expected review threads per pull request left for follow-up pages."""
    return observed.mean("threads", lambda n: max(0, n - page))


_DOCUMENTS: dict[int, DocumentNode] = {}


def _cost(document: DocumentNode, counting: str, batch: int, key: tuple) -> tuple[int, int]:
    """The batch query's (points, possible nodes), cached per document by identity
    (hashing a document walks its whole tree)."""
    _DOCUMENTS.setdefault(id(document), document)  # kept alive, so the id stays its own
    return _cached_cost(id(document), counting, batch, key)


@cache
def _cached_cost(document: int, counting: str, batch: int, key: tuple) -> tuple[int, int]:
    variables = {"ids": ["x"] * batch, **dict(key)}
    cost = query_cost(_DOCUMENTS[document], variables, counting=counting)
    return cost.points, cost.nodes


PLANS_KEPT = 4096
_PLANS: OrderedDict[tuple, Plan] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def plan(
    document: DocumentNode,
    parts: Iterable[str],
    observed: Observed,
    *,
    counting: str,
    todo: int = BATCHES[0],
    max_nodes: int = NODE_LIMIT,
) -> Plan:
    """The cheapest shape (expected points per pull request) whose batch query stays
    under `max_nodes` possible nodes, counted by `counting`, for `todo` pull requests.
    Remembered per document, histogram and limits (the last PLANS_KEPT asked): the
    search tries a few hundred shapes, and repositories that look alike ask alike."""
    parts = tuple(sorted(set(parts)))
    batches = tuple(sorted({min(todo, BATCHES[0])} | {b for b in BATCHES if b < todo}))
    histogram = tuple(tuple(sorted(observed.counts[kind].items())) for kind in KINDS)
    key = (id(document), parts, counting, batches, max_nodes, histogram)
    with _PLANS_LOCK:
        found = _PLANS.get(key)
        if found is not None:
            _PLANS.move_to_end(key)
            return found
    chosen = _search(document, parts, observed, counting, batches, max_nodes)
    _DOCUMENTS.setdefault(id(document), document)  # kept alive: its id stays its own
    with _PLANS_LOCK:
        _PLANS[key] = chosen
        while len(_PLANS) > PLANS_KEPT:
            _PLANS.popitem(last=False)
    return chosen


def _search(
    document: DocumentNode,
    parts: tuple[str, ...],
    observed: Observed,
    counting: str,
    batches: tuple[int, ...],
    max_nodes: int,
) -> Plan:
    kinds = [kind for part in parts for kind in PART_KINDS[part]]
    threaded = "threads" in kinds
    best: Plan | None = None
    later_cache: dict[tuple[str, int], float] = {}

    def later(kind: str, page: int) -> float:
        if (kind, page) not in later_cache:
            extra = threads_beyond(page, observed) if kind == "threads" else 0.0
            later_cache[kind, page] = followup_requests(kind, page, observed) + extra
        return later_cache[kind, page]

    # the pull requests left, if fewer than a full batch, in one query; else the usual sizes
    for batch in reversed(batches):
        for leaf in LEAF_PAGES:
            for threads in THREAD_PAGES if threaded else (1,):
                for thread_comments in LEAF_PAGES if threaded else (1,):
                    pages = {
                        kind: threads
                        if kind == "threads"
                        else thread_comments
                        if kind == "thread_comments"
                        else leaf
                        for kind in kinds
                    }
                    shape = Shape(batch, pages)
                    key = tuple(sorted(shape.variables(parts).items()))
                    points, nodes = _cost(document, counting, batch, key)
                    if nodes > max_nodes:
                        continue
                    follow = sum(later(k, pages[k]) for k in kinds)
                    per_pr = points / batch + follow / PAGE_LIMIT
                    candidate = Plan(shape, counting, nodes, points, per_pr)
                    if best is None or _better(candidate, best):
                        best = candidate
        if best is not None:  # a larger batch that fits beats any smaller one
            return best
    # Even one pull request with the smallest pages is too heavy for `max_nodes`.
    smallest = Shape(1, dict.fromkeys(kinds, 1))
    points, nodes = _cost(document, counting, 1, tuple(sorted(smallest.variables(parts).items())))
    return Plan(smallest, counting, nodes, points, float(points))


def _better(a: Plan, b: Plan) -> bool:
    """Fewer expected points; at equal points, larger pages (page size costs nodes, not
    points, and covers the long tails the histogram has not shown yet)."""
    if not math.isclose(a.points_per_pr, b.points_per_pr, rel_tol=1e-9, abs_tol=1e-9):
        return a.points_per_pr < b.points_per_pr
    return a.nodes > b.nodes
