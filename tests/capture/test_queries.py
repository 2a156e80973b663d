"""Every query document the client sends is valid against GitHub's real schema."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from graphql import build_schema, parse, validate

from capture.fetch.collect import by_ids_document, numbers_query
from capture.fetch.pages import PAGES, Page, compose
from capture.fetch.shape import Observed, Shape, plan
from capture.freshness.probe import Asked, probe_query
from capture.github.cost import query_cost
from capture.github.graphql import document
from capture.webhooks.riders import RIDERS
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
    assert set(QUERIES) >= {"RepositorySweep", "PullRequestsByIds"}


@pytest.mark.parametrize("name", QUERIES)
def test_document_is_valid_against_githubs_schema(github, name):
    doc = parse(document(name))
    assert validate(github, doc) == []
    operations = [d for d in doc.definitions if d.kind == "operation_definition"]
    assert [op.name.value for op in operations] == [name]  # one named operation per file


def test_composed_page_queries_are_valid_too(github):
    pages = [Page(f"N{i}", kind, "Y3Vyc29y", 1, 1, left=7) for i, kind in enumerate(PAGES)]
    text, variables = compose(pages)
    assert validate(github, parse(text)) == []
    assert len(variables) == 2 * len(PAGES)


def test_the_composed_numbers_query_is_valid_and_costs_one_point_for_a_hundred(github):
    text, variables = numbers_query("acme/widgets", list(range(1, 101)))
    assert validate(github, parse(text)) == []
    for counting in ("strict", "lenient"):
        assert query_cost(parse(text), variables, counting=counting).points == 1
    # the numbers are variables: another hundred is the same text (parsed once)
    other, more = numbers_query("acme/widgets", list(range(501, 601)))
    assert (other, more["n0"], more["n99"]) == (text, 501, 600)


def test_pull_requests_riding_a_full_probe_query_are_valid_and_cost_nothing_more(github):
    """New pull requests' files and commits (webhooks) ride the probe: the query stays
    at one point under either reading of how nodes(ids:) counts, far under the node limit."""
    asked = [Asked(f"acme/r{i}", f"R_{i}") for i in range(100)]
    text, variables = probe_query(asked, [f"PR_{i}" for i in range(RIDERS)])
    assert validate(github, parse(text)) == []
    for counting in ("strict", "lenient"):
        cost = query_cost(parse(text), variables, counting=counting)
        assert cost.points == 1
        assert cost.nodes < 10_000


def test_a_composed_pages_weight_is_what_githubs_rules_say():
    pages = [Page(f"N{i}", kind, "Y3Vyc29y", 1, 1, left=40) for i, kind in enumerate(PAGES)]
    text, variables = compose(pages)
    for counting in ("strict", "lenient"):
        cost = query_cost(parse(text), variables, counting=counting)
        assert cost.requests == sum(p.weight()[0] for p in pages)
        assert cost.nodes == sum(p.weight()[1] for p in pages)


ALL = {"details", "reviews", "comments", "labels"}


def everything_at_100(batch: int) -> dict:
    return Shape(
        batch,
        dict.fromkeys(
            ("labels", "files", "commits", "reviews", "comments", "threads", "thread_comments"), 100
        ),
    ).variables(ALL)


def test_a_hundred_ids_at_full_pages_is_cheap_if_lenient_and_refused_if_strict():
    """The trap GitHub's documentation leaves open: 100 ids x 100 threads x 100 comments."""
    doc = by_ids_document()
    variables = {"ids": ["x"] * 100, **everything_at_100(100)}
    lenient = query_cost(doc, variables, counting="lenient")
    strict = query_cost(doc, variables, counting="strict")
    assert (lenient.points, lenient.nodes) == (1, 10_600)
    assert strict.nodes == 100 + 100 * 600 + 100 * 100 * 100 > 500_000
    assert strict.points == round((1 + 100 * 6 + 100 * 100) / 100)


@pytest.mark.parametrize("counting", ["strict", "lenient"])
def test_the_planned_shape_stays_under_the_node_limit_and_is_cheap(counting):
    doc = by_ids_document()
    chosen = plan(doc, ALL - {"labels"}, Observed(), counting=counting, max_nodes=100_000)
    variables = {"ids": ["x"] * chosen.shape.batch, **chosen.shape.variables(ALL - {"labels"})}
    cost = query_cost(doc, variables, counting=counting)
    assert (cost.points, cost.nodes) == (chosen.batch_points, chosen.nodes)
    assert cost.nodes <= 100_000
    assert chosen.shape.batch == 100
    assert chosen.batch_points <= (7 if counting == "strict" else 1)


def test_a_plan_is_remembered_for_a_histogram_and_searched_again_for_another():
    from capture.fetch import shape

    doc = by_ids_document()
    observed = Observed()
    observed.add("comments", [3, 40, 250])
    first = plan(doc, ALL, observed, counting="strict", todo=7)
    assert plan(doc, ALL, observed, counting="strict", todo=7) is first  # not searched again
    batches = tuple(sorted({7} | {b for b in shape.BATCHES if b < 7}))
    searched = shape._search(doc, tuple(sorted(ALL)), observed, "strict", batches, 100_000)
    assert searched == first  # remembering changes nothing
    observed.add("comments", [900] * 50)  # a long tail shows: another search, another plan
    again = plan(doc, ALL, observed, counting="strict", todo=7)
    assert again is not first
    assert again.shape.pages["comments"] >= first.shape.pages["comments"]


def test_the_probe_query_by_node_id_and_by_name_is_valid_and_costs_one_point(github):
    asked = [Asked(f"acme/r{i}", f"R_{i}" if i % 2 else None) for i in range(100)]
    text, variables = probe_query(asked)
    assert validate(github, parse(text)) == []
    for counting in ("strict", "lenient"):
        assert query_cost(parse(text), variables, counting=counting).points == 1
