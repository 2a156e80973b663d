"""The sandbox's GraphQL schema is a faithful subset of GitHub's real one."""

from __future__ import annotations

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
    parse,
)

from capture.github.cost import query_cost
from devtools.sandbox.graphql_api import load_schema
from tests.conftest import ROOT

REAL = ROOT.parent / "shared" / "github" / "schema.graphql"


@pytest.fixture(scope="module")
def github():
    schema = build_schema(REAL.read_text(), assume_valid_sdl=True)
    schema._validation_errors = []  # GitHub's SDL has known quirks; see shared/github/NOTICE
    return schema


def members(schema):
    for name, kind in schema.type_map.items():
        if name.startswith("__"):
            continue
        yield name, kind


def test_every_type_field_argument_and_enum_value_exists_in_githubs_schema(github):
    checked = 0
    for name, ours in members(load_schema()):
        theirs = github.type_map.get(name)
        assert theirs is not None, f"type {name} is not in GitHub's schema"
        assert type(theirs) is type(ours), name
        if isinstance(ours, GraphQLEnumType):
            assert set(ours.values) <= set(theirs.values), name
        if isinstance(ours, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in ours.fields.items():
                real = theirs.fields.get(field_name)
                assert real is not None, f"{name}.{field_name} is not in GitHub's schema"
                assert str(real.type) == str(field.type), f"{name}.{field_name}"
                for arg_name, arg in getattr(field, "args", {}).items():
                    assert arg_name in real.args, f"{name}.{field_name}({arg_name})"
                    assert str(real.args[arg_name].type) == str(arg.type), arg_name
                checked += 1
        if isinstance(ours, GraphQLObjectType):
            assert {i.name for i in ours.interfaces} <= {i.name for i in theirs.interfaces}
    assert checked > 150


def test_githubs_documented_cost_example_is_51_points():
    document = parse("""
        query {
          viewer {
            login
            repositories(first: 100) {
              edges { node { id
                issues(first: 50) { edges { node { id
                  labels(first: 60) { edges { node { id name } } } } } } } }
            }
          }
        }""")
    cost = query_cost(document)
    assert cost.requests == 1 + 100 + 100 * 50
    assert cost.points == 51
    assert cost.nodes == 100 + 100 * 50 + 100 * 50 * 60


@pytest.mark.parametrize(
    ("query", "variables", "requests", "points"),
    [
        ("{ rateLimit { cost } }", {}, 0, 1),
        (
            'query($n: Int!) { repository(owner: "a", name: "b") { pullRequests(first: $n) '
            "{ nodes { reviews(first: 10) { totalCount } } } } }",
            {"n": 100},
            101,
            1,
        ),
        (
            '{ a: repository(owner: "a", name: "b") { pullRequests(last: 100) { nodes { '
            "files(first: 100) { totalCount } commits(first: 100) { totalCount } } } } }",
            {},
            201,
            2,
        ),
        (
            "fragment F on PullRequest { files(first: 50) { totalCount } } "
            '{ repository(owner: "a", name: "b") { pullRequests(first: 100) '
            "{ nodes { ...F } } } }",
            {},
            101,
            1,
        ),
    ],
)
def test_cost_counts_connections_through_variables_and_fragments(
    query, variables, requests, points
):
    cost = query_cost(parse(query), variables)
    assert (cost.requests, cost.points) == (requests, points)
