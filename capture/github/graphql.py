"""The GraphQL client: named documents from capture/queries, errors mapped, points counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import httpx
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from capture.errors import NotFound, QueryFailed, RateLimited, ServerError, TooHeavy
from capture.github.cost import COUNTINGS, query_cost
from capture.github.session import SERVER_TRIES, Session

log = logging.getLogger(__name__)

HEAVY = ("exceeds the maximum", "timeout", "timed out", "too complex")


@cache
def document(name: str) -> str:
    """capture/queries/<name>.graphql followed by the fragment files it `#import`s."""
    queries = resources.files("capture").joinpath("queries")
    seen: list[str] = []

    def walk(file: str) -> None:
        if file in seen:
            return
        seen.append(file)
        for line in queries.joinpath(f"{file}.graphql").read_text().splitlines():
            if line.startswith("#import "):
                walk(line.removeprefix("#import ").strip())

    walk(name)
    text = "\n".join(queries.joinpath(f"{f}.graphql").read_text() for f in seen)
    return used_only(text)


@cache
def fragments() -> str:
    """The shared fragment definitions (capture/queries/Fields.graphql), for composed queries."""
    return resources.files("capture").joinpath("queries", "Fields.graphql").read_text()


@lru_cache(maxsize=512)
def used_only(text: str) -> str:
    """The document without fragment definitions that no operation uses (composed
    documents repeat: a page pack's shape, not its cursors, makes the text)."""
    doc = parse(text)
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    used: set[str] = set()

    class Spreads(Visitor):
        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            if node.name.value not in used:
                used.add(node.name.value)
                visit(fragments[node.name.value], self)

    for definition in doc.definitions:
        if not isinstance(definition, FragmentDefinitionNode):
            visit(definition, Spreads())
    kept = [
        d
        for d in doc.definitions
        if not isinstance(d, FragmentDefinitionNode) or d.name.value in used
    ]
    return print_ast(DocumentNode(definitions=tuple(kept)))


@lru_cache(maxsize=256)
def parsed(text: str) -> tuple[DocumentNode, str]:
    """A document and the name of its (first) operation."""
    doc = parse(text)
    operation = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    return doc, operation.name.value if operation.name else "anonymous"


def points(text: str, doc: DocumentNode, variables: dict[str, Any], counting: str) -> int:
    """The query's planned points, computed once per document and shape: only page sizes,
    list lengths and flags change a cost, never a cursor or a name."""
    shape = tuple(
        sorted(
            (name, ("list", len(value)) if isinstance(value, list) else value)
            for name, value in variables.items()
            if value is not None and not isinstance(value, str)
        )
    )
    key = (text, shape, counting)
    found = _POINTS.get(key)
    if found is None:
        rebuilt = {
            name: ["x"] * value[1] if isinstance(value, tuple) else value for name, value in shape
        }
        found = query_cost(doc, rebuilt, counting=counting).points
        if len(_POINTS) > 4096:
            _POINTS.clear()
        _POINTS[key] = found
    return found


_POINTS: dict[tuple, int] = {}


@dataclass
class Counting:
    """How the server counts list arguments such as `nodes(ids:)` ("strict" multiplies
    by their length, "lenient" does not), as far as its charged costs tell. Starts
    strict (the safe reading); learns from `rateLimit.cost` unless configured."""

    mode: str = "strict"
    fixed: bool = False

    def observe(
        self, text: str, doc: DocumentNode, variables: dict[str, Any], charged: int
    ) -> None:
        if self.fixed:
            return
        costs = {c: points(text, doc, variables, c) for c in COUNTINGS}
        if costs["strict"] != costs["lenient"]:
            matches = [c for c, cost in costs.items() if cost == charged]
            if len(matches) == 1:
                self.mode = matches[0]

    def refused(self) -> None:
        """GitHub refused a query for its node count: believe the strict reading."""
        if not self.fixed:
            self.mode = "strict"


class GraphQLClient:
    def __init__(self, session: Session, url: str, counting: Counting | None = None) -> None:
        self.session = session
        self.url = url
        self.counting = counting or Counting()

    def query(
        self, name: str, variables: dict[str, Any], *, retry: bool = True
    ) -> tuple[dict, list[dict]]:
        """Runs a named document; returns its data and any partial errors."""
        return self.run(document(name), variables, retry=retry)

    def _send(
        self, text: str, variables: dict[str, Any], planned: int, retry: bool
    ) -> httpx.Response:
        """One POST; 502/504 retried a bounded number of times (not without `retry`)."""
        tries = 0
        while True:
            tries += 1
            try:
                return self.session.request(
                    "POST",
                    self.url,
                    "graphql",
                    cost=planned,
                    json={"query": text, "variables": variables},
                )
            except ServerError as exc:
                if not retry:
                    raise
                if tries == SERVER_TRIES:
                    raise QueryFailed(f"GraphQL answered HTTP {exc.status} {tries} times") from None
                self.session.sleep(2**tries)

    def run(
        self,
        text: str,
        variables: dict[str, Any],
        *,
        retry: bool = True,
        missing_ok: bool = False,
    ) -> tuple[dict, list[dict]]:
        """Without `retry`, 502/504 raise ServerError at once (for callers that shrink the
        page); with it, they are retried a bounded number of times, then QueryFailed.
        With `missing_ok`, a top-level field GitHub cannot resolve (an aliased repository
        that is gone) is left null in the data instead of raising NotFound."""
        doc, operation = parsed(text)
        planned = points(text, doc, variables, self.counting.mode)
        # RATE_LIMITED spends that credential's hour (its headers say so, and the ledger
        # keeps it): asked again, the session draws another with headroom, or raises
        # RateLimited when every one is spent.
        for _ in range(len(self.session.pool.credentials) + 1):
            response = self._send(text, variables, planned, retry)
            body = response.json()
            response.close()
            errors = body.get("errors") or []
            if not any(e.get("type") == "RATE_LIMITED" for e in errors):
                break
            log.warning("a credential's GraphQL budget is spent; trying another")
        data = body.get("data") or {}
        cost = (data.get("rateLimit") or {}).get("cost")
        charged = int(cost if cost is not None else (0 if errors else 1))
        self.session.meter.query(operation, charged)
        if cost is not None:
            self.counting.observe(text, doc, variables, int(cost))
        for error in errors:
            if error.get("type") == "RATE_LIMITED":
                reset = self.session.budget.reset_at.get("graphql")
                raise RateLimited(
                    reset or self.session.now() + timedelta(hours=1), "primary rate limit"
                )
        if errors and not data:
            kinds = {e.get("type") for e in errors}
            first = errors[0].get("message", "unknown error")
            if "MAX_NODE_LIMIT_EXCEEDED" in kinds:
                raise TooHeavy(first, node_limit=True)
            if any(word in first.lower() for word in HEAVY):
                raise TooHeavy(first)
            if "NOT_FOUND" in kinds:
                raise NotFound(first)
            raise QueryFailed(f"GraphQL query failed: {first}")
        top = [e for e in errors if e.get("type") == "NOT_FOUND" and len(e.get("path") or []) == 1]
        if top and not missing_ok:
            raise NotFound(top[0].get("message", "not found"))
        return data, errors
