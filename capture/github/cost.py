"""GitHub's GraphQL cost and node-limit rules, computed from a query document; pure.

From GitHub's documentation: add up, over every connection in the query, the number of
requests needed to fill it (the product of the page sizes of its ancestor connections; a
top-level connection counts 1), divide by 100 and round, at least 1 point. The node
count is the sum over connections of the product of page sizes down to and including it.

The documentation leaves open how a field taking a list, such as `nodes(ids: [...])`,
counts. Two readings, both supported: "lenient" (the list is not a connection: what is
under it counts as top-level) and "strict" (the list is a connection whose page size is
its length, so 100 ids multiply everything beneath them by 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    value_from_ast_untyped,
)

NODE_LIMIT = 500_000
PAGE_LIMIT = 100
COUNTINGS = ("strict", "lenient")


@dataclass(frozen=True)
class Cost:
    requests: int
    nodes: int

    @property
    def points(self) -> int:
        return max(1, math.floor(self.requests / 100 + 0.5))


def page_size(field: FieldNode, variables: dict[str, Any], counting: str = "lenient") -> int | None:
    """The field's `first` or `last`, if it is a paginated connection; under strict
    counting also the length of a list argument (`nodes(ids: [...])`)."""
    listed = None
    for argument in field.arguments or ():
        value = value_from_ast_untyped(argument.value, variables)
        if argument.name.value in ("first", "last"):
            return int(value) if isinstance(value, int) else None
        if counting == "strict" and isinstance(value, list):
            listed = len(value)
    return listed


def included(selection: Any, variables: dict[str, Any]) -> bool:
    """False for a selection dropped by @include(if: false) or @skip(if: true)."""
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("include", "skip"):
            continue
        condition = next((a for a in directive.arguments or () if a.name.value == "if"), None)
        value = bool(value_from_ast_untyped(condition.value, variables)) if condition else True
        if (name == "include") != value:
            return False
    return True


def query_cost(
    document: DocumentNode,
    variables: dict[str, Any] | None = None,
    operation: str | None = None,
    counting: str = "lenient",
) -> Cost:
    """The requests and possible nodes of one operation of `document`, by `counting`."""
    if counting not in COUNTINGS:
        raise ValueError(f"counting must be one of {', '.join(COUNTINGS)}, got {counting!r}")
    variables = variables or {}
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = next(
        (o for o in operations if operation is None or (o.name and o.name.value == operation)),
        None,
    )
    if chosen is None:
        return Cost(0, 0)
    totals = [0, 0]

    def walk(selection_set: SelectionSetNode | None, multiplier: int, seen: frozenset) -> None:
        for selection in selection_set.selections if selection_set else ():
            if not included(selection, variables):
                continue
            if isinstance(selection, FieldNode):
                size = page_size(selection, variables, counting)
                if size is None:
                    walk(selection.selection_set, multiplier, seen)
                    continue
                totals[0] += multiplier
                totals[1] += multiplier * size
                walk(selection.selection_set, multiplier * size, seen)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set, multiplier, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    walk(fragments[name].selection_set, multiplier, seen | {name})

    walk(chosen.selection_set, 1, frozenset())
    return Cost(requests=totals[0], nodes=totals[1])
