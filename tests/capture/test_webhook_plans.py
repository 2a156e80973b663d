"""The webhook paths' statements stay index reads with a year of deliveries stored:
EXPLAIN over 300,000 processed deliveries, a few waiting, old redeliveries, and 100
repositories' pull requests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from capture.freshness.registry import DELIVERED
from capture.webhooks.deliveries import CLAIM, OPEN, SEEN, STORED_PULLS
from capture.webhooks.reconcile import LAST_RECEIVED
from capture.webhooks.reconcile import OPEN as OPEN_REDELIVERIES
from capture.webhooks.riders import CLAIM as RIDERS_CLAIM
from capture.webhooks.status import LAST_POSTED, PULLED_SINCE
from devtools import fleetdata

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def year(database_url):
    fleetdata.fill(database_url, 100)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO github_deliveries (delivery_id, event, action, installation_id, "
            "repository_id, repository, received_at, payload, status) "
            "SELECT 'd' || g, 'issue_comment', 'created', g %% 50, g %% 3000, "
            "'o/r' || (g %% 3000), %s - make_interval(secs => g * 100), "
            '\'{"repository": {"private": false}}\', '
            "CASE WHEN g %% 20000 = 0 THEN 'refresh' ELSE 'processed' END "
            "FROM generate_series(1, 300000) g",
            (NOW,),
        )
        conn.execute(
            "INSERT INTO webhook_redeliveries (guid, hook_id, requested_at, failed_at, "
            "resolved_at) SELECT 'd' || g, g, %s, %s, %s FROM generate_series(1, 50000) g",
            (NOW, NOW, NOW),
        )
        conn.execute(
            "INSERT INTO tracked_repositories (repository, tier, added_at, repo_id, "
            "installation_id) SELECT 'fleet/t' || g, 'cold', now(), 1000000 + g, g % 50 "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE")
    return database_url


def plan(conn: psycopg.Connection, query: str, params: object) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))


def test_the_webhook_statements_read_by_index(year):
    statements = {
        "an apply job's open deliveries": (OPEN, (7, "received", 500)),
        "a refresh batch's claim": (
            CLAIM,
            {"repo": 7, "job": uuid.uuid4(), "now": NOW, "stale": NOW, "limit": 200},
        ),
        "the planner's claim of pull requests to ride its probe": (
            RIDERS_CLAIM,
            {"me": uuid.uuid4(), "now": NOW, "stale": NOW, "limit": 16},
        ),
        "stored pull requests by repository and number": (STORED_PULLS, ([7, 8], [1, 2])),
        "an issue comment's pull request told newer": (SEEN, ([1, 2], [NOW, NOW], 7)),
        "a probe's newest pull requests already delivered": (
            DELIVERED,
            (["a/b", "c/d"], [7, 8], [1, 2], [NOW, NOW]),
        ),
        "the newest delivery received": (LAST_RECEIVED, ()),
        "the newest delivery GitHub posted": (LAST_POSTED, ()),
        "deliveries read from the log since": (PULLED_SINCE, (NOW,)),
        "redeliveries still open": (OPEN_REDELIVERIES, (500,)),
    }
    with psycopg.connect(year) as conn:
        for name, (query, params) in statements.items():
            text = plan(conn, query, params)
            assert "Seq Scan on github_deliveries" not in text, (name, text)
            assert "Seq Scan on webhook_redeliveries" not in text, (name, text)
            assert "Seq Scan on pull_requests" not in text, (name, text)
            assert "Seq Scan on tracked_repositories" not in text, (name, text)
