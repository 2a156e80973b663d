"""A lean executor for documents already validated against the sandbox's schema.

graphql-core's executor does, per field, what a server of any schema and any resolvers
needs (awaitables, incremental delivery, middleware, path objects). The sandbox answers
the same few documents thousands of times over plain dicts and callables, so here is
what those documents use and nothing more: fields, aliases, arguments and variables,
fragments and inline fragments with type conditions, @include and @skip, lists,
interfaces and unions, and errors that null the nearest nullable field as the GraphQL
spec says. A test pins its answers to graphql-core's over every document the capture
sends (tests/devtools/test_sandbox_executor.py).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    is_abstract_type,
    is_leaf_type,
    located_error,
)
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values

Path = list[str | int]


class Info:
    """What the sandbox's resolvers read of graphql-core's ResolveInfo: the context."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


class _Nulled(Exception):
    """A non-null field came out null: its parent becomes null in turn."""


class Execution:
    """One document's run: `data` and `errors` as graphql-core's ExecutionResult has."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        root: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Any,
    ) -> None:
        self.schema, self.info = schema, Info(context)
        self.errors: list[GraphQLError] = []
        self.data: dict[str, Any] | None = None
        self.fragments: dict[str, FragmentDefinitionNode] = {}
        operations: list[OperationDefinitionNode] = []
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                self.fragments[definition.name.value] = definition
            elif isinstance(definition, OperationDefinitionNode) and (
                operation_name is None
                or (definition.name is not None and definition.name.value == operation_name)
            ):
                operations.append(definition)
        if len(operations) != 1:
            what = "Must provide operation name if query contains multiple operations."
            if not operations:
                what = f'Unknown operation named "{operation_name}".'
                if operation_name is None:
                    what = "Must provide an operation."
            self.errors.append(GraphQLError(what))
            return
        operation = operations[0]
        coerced = get_variable_values(
            schema, operation.variable_definitions or (), variables or {}, max_errors=50
        )
        if isinstance(coerced, list):
            self.errors = coerced
            return
        self.variables = coerced
        self.collected: dict[tuple[str, int], dict[str, list[FieldNode]]] = {}
        kind = operation.operation.value
        top = {"query": schema.query_type, "mutation": schema.mutation_type}.get(kind)
        if top is None:
            self.errors.append(
                GraphQLError(f"Schema is not configured to execute {kind} operation.")
            )
            return
        try:
            self.data = self.fields(top, root, [operation.selection_set], [])
        except _Nulled:
            self.data = None

    # collecting ---------------------------------------------------------------------------
    def collect(
        self, parent: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        """The fields of `selection_sets` that apply to `parent`, by response key (a lone
        selection set's, as most are, worked out once per type and run)."""
        key = (parent.name, id(selection_sets[0]))
        if len(selection_sets) == 1 and (found := self.collected.get(key)) is not None:
            return found
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._collect(parent, selection_set, grouped, set())
        if len(selection_sets) == 1:
            self.collected[key] = grouped
        return grouped

    def _collect(
        self,
        parent: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if not self.included(selection):
                continue
            if isinstance(selection, FieldNode):
                name = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(name, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self.applies(selection.type_condition, parent):
                    self._collect(parent, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self.applies(fragment.type_condition, parent):
                    self._collect(parent, fragment.selection_set, grouped, visited)

    def included(self, node: Any) -> bool:
        if not node.directives:
            return True
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip["if"] is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include["if"] is False)

    def applies(self, condition: Any, parent: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        named = self.schema.get_type(condition.name.value)
        if named is parent:
            return True
        return is_abstract_type(named) and self.schema.is_sub_type(named, parent)  # type: ignore[arg-type]

    # executing ----------------------------------------------------------------------------
    def fields(
        self,
        parent: GraphQLObjectType,
        source: Any,
        selection_sets: list[SelectionSetNode],
        path: Path,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, nodes in self.collect(parent, selection_sets).items():
            name = nodes[0].name.value
            if name == "__typename":
                out[key] = parent.name
                continue
            definition = parent.fields[name]
            here = [*path, key]
            try:
                raw = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
                if callable(raw):
                    args = get_argument_values(definition, nodes[0], self.variables)
                    raw = raw(self.info, **args)
                out[key] = self.complete(definition.type, nodes, raw, here, parent, name)
            except _Nulled:
                if isinstance(definition.type, GraphQLNonNull):
                    raise
                out[key] = None
            except Exception as exc:  # a resolver's error is the field's error
                self.errors.append(located_error(exc, nodes, here))
                if isinstance(definition.type, GraphQLNonNull):
                    raise _Nulled from None
                out[key] = None
        return out

    def complete(
        self,
        kind: Any,
        nodes: list[FieldNode],
        value: Any,
        path: Path,
        parent: GraphQLObjectType,
        name: str,
    ) -> Any:
        if isinstance(kind, GraphQLNonNull):
            done = self.complete(kind.of_type, nodes, value, path, parent, name)
            if done is None:
                message = f"Cannot return null for non-nullable field {parent.name}.{name}."
                self.errors.append(GraphQLError(message, nodes, path=path))
                raise _Nulled
            return done
        if value is None:
            return None
        if isinstance(kind, GraphQLList):
            out = []
            item = kind.of_type
            for index, entry in enumerate(value):
                try:
                    out.append(self.complete(item, nodes, entry, [*path, index], parent, name))
                except _Nulled:
                    if isinstance(item, GraphQLNonNull):
                        raise
                    out.append(None)
            return out
        if is_leaf_type(kind):
            return kind.coerce_output_value(value)
        if is_abstract_type(kind):
            resolve = kind.resolve_type
            runtime = resolve(value, self.info, kind) if resolve else value["__typename"]
            kind = self.schema.get_type(runtime)
        return self.fields(kind, value, [n.selection_set for n in nodes if n.selection_set], path)
