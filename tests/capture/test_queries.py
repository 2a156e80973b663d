"""Every query document the client sends is valid against GitHub's real schema."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from graphql import build_schema, parse, validate

from capture.collect import PAGES, Page, compose
from capture.github.graphql import document
from capture.querycost import query_cost
from tests.devtools.test_sandbox_schema import REAL

QUERIES = sorted(
    p.name.removesuffix(".graphql")
    for p in resources.files("capture").joinpath("queries").iterdir()
    if p.name.endswith(".graphql") and re.search(r"^query ", p.read_text(), re.MULTILINE)
)


@pytest.fixture(scope="module")
def github():
    schema = build_schema(REAL.read_text(), assume_valid_sdl=True)
    schema._validation_errors = []  # see shared/github/NOTICE.md
    return schema


def test_there_are_documents():
    assert set(QUERIES) >= {"RepositorySweep", "PullRequestsByIds", "PullRequestNumber"}


@pytest.mark.parametrize("name", QUERIES)
def test_document_is_valid_against_githubs_schema(github, name):
    doc = parse(document(name))
    assert validate(github, doc) == []
    operations = [d for d in doc.definitions if d.kind == "operation_definition"]
    assert [op.name.value for op in operations] == [name]  # one named operation per file


def test_composed_page_queries_are_valid_too(github):
    pages = [Page(f"N{i}", kind, "Y3Vyc29y", 1, 1) for i, kind in enumerate(PAGES)]
    text, variables = compose(pages)
    assert validate(github, parse(text)) == []
    assert len(variables) == 2 * len(PAGES)


def test_the_by_id_query_costs_one_point_for_a_hundred_pull_requests():
    flags = {"details": True, "reviews": True, "comments": True}
    cost = query_cost(parse(document("PullRequestsByIds")), {"ids": ["x"] * 100, **flags})
    assert cost.points == 1
    assert cost.nodes < 500_000
