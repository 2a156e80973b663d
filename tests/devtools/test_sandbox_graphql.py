"""GraphQL: pagination, cost and budgets, limits, faults, as GitHub documents them."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox
from tests.sandbox_fixtures import NOW, gql

PAGE = """query($after: String, $before: String, $first: Int, $last: Int) {
  repository(owner: "acme", name: "widgets") {
    pullRequests(first: $first, last: $last, after: $after, before: $before) {
      totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes { number }
    }
  }
}"""
NESTED = """{ rateLimit { cost remaining used limit nodeCount resetAt }
  repository(owner: "acme", name: "widgets") {
    pullRequests(first: 100) { nodes { number reviews(first: 100) { totalCount } } } } }"""


def pulls(response):
    return response.json()["data"]["repository"]["pullRequests"]


def test_paging_forward_with_after_visits_every_pull_request_once(gh, world):
    seen, after = [], None
    while True:
        page = pulls(gql(gh, PAGE, first=100, after=after))
        seen += [n["number"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(world.repository("acme/widgets").pulls)
    assert page["totalCount"] == 400


def test_paging_backward_with_last_and_before(gh):
    tail = pulls(gql(gh, PAGE, last=30))
    assert [n["number"] for n in tail["nodes"]] == list(range(371, 401))
    assert tail["pageInfo"]["hasPreviousPage"]
    assert not tail["pageInfo"]["hasNextPage"]
    before = pulls(gql(gh, PAGE, last=10, before=tail["pageInfo"]["startCursor"]))
    assert [n["number"] for n in before["nodes"]] == list(range(361, 371))


@pytest.mark.parametrize(
    ("variables", "kind", "message"),
    [
        ({}, "MISSING_PAGINATION_BOUNDARIES", "You must provide a `first` or `last` value"),
        ({"first": 101}, "EXCESSIVE_PAGINATION", "Requesting 101 records on the `pullRequests`"),
        ({"last": 0}, "EXCESSIVE_PAGINATION", "Requesting 0 records"),
        ({"first": 5, "after": "bm9wZQ=="}, "INVALID_CURSOR_ARGUMENTS", "not appear to be a valid"),
    ],
)
def test_bad_pagination_is_refused_like_github(gh, variables, kind, message):
    body = gql(gh, PAGE, **variables).json()
    assert body["errors"][0]["type"] == kind
    assert message in body["errors"][0]["message"]


def test_order_by_updated_descending(gh):
    query = """{ repository(owner: "acme", name: "widgets") {
      pullRequests(first: 50, orderBy: {field: UPDATED_AT, direction: DESC}) {
        nodes { updatedAt } } } }"""
    times = [n["updatedAt"] for n in pulls(gql(gh, query))["nodes"]]
    assert times == sorted(times, reverse=True)


def test_cost_is_charged_and_reported_by_rate_limit_and_headers(gh):
    first = gql(gh, NESTED)
    limit = first.json()["data"]["rateLimit"]
    assert limit["cost"] == 1  # 1 + 100 requests / 100, rounded
    assert limit["nodeCount"] == 100 + 100 * 100
    assert (limit["limit"], limit["used"], limit["remaining"]) == (5000, 1, 4999)
    assert limit["resetAt"] == "2026-11-29T13:00:00Z"
    assert first.headers["x-ratelimit-remaining"] == "4999"
    assert first.headers["x-ratelimit-resource"] == "graphql"
    assert first.headers["x-ratelimit-reset"] == str(int(NOW.timestamp()) + 3600)
    second = gql(gh, NESTED).json()["data"]["rateLimit"]
    assert second["used"] == 2


def test_budget_window_resets_after_an_hour(gh, clock):
    gql(gh, NESTED)
    clock.advance(hours=1, seconds=1)
    assert gql(gh, NESTED).json()["data"]["rateLimit"]["used"] == 1


def test_primary_exhaustion_is_http_200_rate_limited_with_remaining_zero(gh, sandbox):
    sandbox.budgets.exhaust(DEFAULT_TOKEN, "graphql")
    response = gql(gh, NESTED)
    assert response.status_code == 200
    assert response.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert response.headers["x-ratelimit-remaining"] == "0"


def test_secondary_limit_on_points_per_minute_is_403_with_retry_after(world, clock):
    sandbox = Sandbox(world, Options(tokens={"big": 100_000}), clock=clock)
    client = __import__("httpx").Client(
        transport=sandbox.transport(), base_url="http://s", headers={"Authorization": "token big"}
    )
    # 51 points each by GitHub's rules, yet cheap to run: no pull request has this label.
    heavy = """{ repository(owner: "acme", name: "widgets") {
      pullRequests(first: 100, labels: ["no-such-label"]) { nodes {
        reviewThreads(first: 50) { nodes { comments(first: 40) { totalCount } } } } } } }"""
    statuses = [gql(client, heavy).status_code for _ in range(40)]
    assert statuses == [200] * 39 + [403]  # 39 * 51 = 1,989 points; the 40th passes 2,000
    blocked = gql(client, heavy)
    assert blocked.headers["retry-after"] == "60"
    clock.advance(seconds=61)
    assert gql(client, heavy).status_code == 200


def test_too_many_concurrent_requests_is_a_secondary_limit(gh, sandbox):
    for _ in range(100):
        assert sandbox.budgets.enter(DEFAULT_TOKEN)
    response = gql(gh, NESTED)
    assert response.status_code == 403
    assert "secondary rate limit" in response.json()["message"]


def test_node_limit_refuses_the_query_without_charging(gh):
    query = """{ repository(owner: "acme", name: "widgets") { pullRequests(first: 100) { nodes {
      commits(first: 100) { nodes { commit { oid } } }
      reviewThreads(first: 100) { nodes { comments(first: 100) { totalCount } } } } } } }"""
    response = gql(gh, query)
    assert response.json()["errors"][0]["type"] == "MAX_NODE_LIMIT_EXCEEDED"
    assert response.headers["x-ratelimit-used"] == "0"


def test_heavy_query_times_out_with_502_and_is_still_charged(world, clock):
    sandbox = Sandbox(world, Options(timeout_nodes=5_000), clock=clock)
    client = __import__("httpx").Client(
        transport=sandbox.transport(),
        base_url="http://s",
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    response = gql(client, NESTED)
    assert response.status_code == 502
    assert response.headers["x-ratelimit-used"] == "1"
    assert sandbox.ledger.summary("graphql")["points"] == 1


def test_latency_per_request_and_per_node_goes_through_the_injected_sleep(world, clock):
    slept: list[float] = []
    sandbox = Sandbox(
        world, Options(latency=0.1, node_latency=1e-5, sleep=slept.append), clock=clock
    )
    client = __import__("httpx").Client(
        transport=sandbox.transport(),
        base_url="http://s",
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    gql(client, NESTED)
    assert slept == [0.1, pytest.approx(1e-5 * 10_100)]


def test_requests_without_a_valid_token_get_401(sandbox):
    client = __import__("httpx").Client(transport=sandbox.transport(), base_url="http://s")
    assert gql(client, NESTED).status_code == 401
    bad = client.post("/graphql", json={"query": NESTED}, headers={"Authorization": "token nope"})
    assert bad.status_code == 401


def test_a_502_burst_from_the_fault_plan_then_recovery(gh, sandbox):
    sandbox.faults.add("graphql:502:3")
    assert [gql(gh, NESTED).status_code for _ in range(4)] == [502, 502, 502, 200]


def test_secondary_limit_for_30_seconds(gh, sandbox, clock):
    sandbox.faults.add("graphql:secondary:30s")
    first = gql(gh, NESTED)
    assert first.status_code == 403
    assert int(first.headers["retry-after"]) == 31
    clock.advance(seconds=29)
    assert gql(gh, NESTED).status_code == 403
    clock.advance(seconds=2)
    assert gql(gh, NESTED).status_code == 200


def test_partial_error_on_one_pull_request(gh, sandbox):
    sandbox.faults.add("graphql:partial:pr=3")
    query = """{ repository(owner: "acme", name: "widgets") { pullRequests(first: 5) { nodes {
      number files(first: 5) { totalCount } } } } }"""
    body = gql(gh, query).json()
    nodes = body["data"]["repository"]["pullRequests"]["nodes"]
    assert nodes[2] == {"number": 3, "files": None}
    assert all(n["files"] is not None for i, n in enumerate(nodes) if i != 2)
    assert body["errors"][0]["path"] == ["repository", "pullRequests", "nodes", 2, "files"]


def test_unknown_repository_and_invalid_documents(gh):
    missing = gql(gh, '{ repository(owner: "acme", name: "nope") { id } }').json()
    assert missing["errors"][0]["type"] == "NOT_FOUND"
    assert missing["data"] == {"repository": None}
    invalid = gql(gh, '{ repository(owner: "acme", name: "widgets") { stars } }').json()
    assert invalid == {  # as GitHub answers a field a type does not have
        "errors": [
            {
                "path": ["query", "repository", "stars"],
                "extensions": {
                    "code": "undefinedField",
                    "typeName": "Repository",
                    "fieldName": "stars",
                },
                "locations": [{"line": 1, "column": 48}],
                "message": "Field 'stars' doesn't exist on type 'Repository'",
            }
        ]
    }
    typo = gql(gh, '{ repository(owner: "acme", name: "widgets") { name(size: 1) } }').json()
    assert typo["errors"][0]["type"] == "INVALID_QUERY"  # other problems: graphql's words


def test_what_a_user_of_the_capture_queries_would_also_ask_is_served(gh, world):
    """Beyond what the capture sends: a review's own comments, counts, decisions."""
    repo = world.repository("acme/widgets")
    pr = next(p for p in repo.pulls.values() if any(c.review_id for c in p.review_comments))
    query = """query($n: Int!) { repository(owner: "acme", name: "widgets") {
      description stargazerCount isArchived isFork
      pullRequest(number: $n) {
        totalCommentsCount reviewDecision authorAssociation closed baseRefOid
        reviews(first: 100) { nodes { databaseId url authorAssociation commit { oid }
          comments(first: 100) { totalCount nodes { databaseId authorAssociation } } } }
        reviewThreads(first: 100) { nodes { isOutdated isCollapsed diffSide originalLine } }
      } } }"""
    body = gql(gh, query, n=pr.number).json()
    assert "errors" not in body, body
    got = body["data"]["repository"]["pullRequest"]
    assert got["totalCommentsCount"] == len(pr.comments) + len(pr.review_comments)
    by_review = {r["databaseId"]: r["comments"]["totalCount"] for r in got["reviews"]["nodes"]}
    for review in pr.reviews:
        mine = [c for c in pr.review_comments if c.review_id == review.database_id]
        assert by_review[review.database_id] == len(mine)
    assert sum(by_review.values()) == sum(1 for c in pr.review_comments if c.review_id)


def test_authors_include_bots_and_deleted_accounts(gh):
    query = """{ repository(owner: "acme", name: "widgets") { pullRequests(first: 100) { nodes {
      author { __typename login ... on User { databaseId } ... on Bot { databaseId } } } } } }"""
    authors = [n["author"] for n in pulls(gql(gh, query))["nodes"]]
    assert None in authors
    assert {"User", "Bot"} <= {a["__typename"] for a in authors if a}


def test_time_can_be_frozen(world):
    with freeze_time("2027-01-01T00:00:00Z"):
        sandbox = Sandbox(world)
        client = __import__("httpx").Client(
            transport=sandbox.transport(),
            base_url="http://s",
            headers={"Authorization": f"token {DEFAULT_TOKEN}"},
        )
        limit = gql(client, NESTED).json()["data"]["rateLimit"]
    assert limit["resetAt"] == "2027-01-01T01:00:00Z"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # one field asked twice with different sub-selections (merged), aliases, fragments
        # on an interface and inline ones, @include/@skip from variables
        (
            """query($yes: Boolean!, $no: Boolean!) { repository(owner: "acme", name: "widgets") {
              a: pullRequests(first: 3) { nodes { number author { login } } }
              a: pullRequests(first: 3) { nodes { author { ... on User { name } } } }
              b: pullRequest(number: 2) { ...F @include(if: $yes) title @skip(if: $no) }
              c: pullRequest(number: 3) { ...F @include(if: $no) ... on PullRequest { state } }
            } } fragment F on PullRequest { id number __typename }""",
            {"yes": True, "no": False},
        ),
        # a missing pull request: an error under a nullable field, the rest answered
        (
            '{ repository(owner: "acme", name: "widgets") { pullRequest(number: 99999) { id } '
            "name } }",
            {},
        ),
        # node(s) by id, known and unknown, through the Node interface
        ('{ nodes(ids: ["nope"]) { id ... on PullRequest { number } } }', {}),
        # variables of the wrong type; two operations and no name
        (
            'query($n: Int!) { repository(owner: "acme", name: "widgets") '
            "{ pullRequest(number: $n) { id } } }",
            {"n": "two"},
        ),
        ("query A { rateLimit { cost } } query B { rateLimit { remaining } }", {}),
    ],
)
def test_the_lean_executor_answers_as_graphql_core_does(gh, sandbox, query, variables):
    answer = gql(gh, query, **variables).json()
    assert answer["data"] is not None or answer.get("errors")
    assert sandbox.options.executor == "compare"
    assert sandbox.graphql.differences == []  # and the fixture checks again at its end
