"""A session keeps the read-only default it connected with: connections made while the
database was read-only (a demoted primary) are dropped on their first refused write, so
the ledger, the capture storage and the store write again once it is writable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest

from capture.errors import StorageError
from capture.freshness.registry import Entry, Registry
from jobstore import db
from jobstore.boundary import patiently
from jobstore.budgets import Observed, PostgresBudgets
from jobstore.errors import DatabaseUnavailable
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def read_only(url: str, on: bool) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        value = "on" if on else "off"
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')


@pytest.fixture
def spell(database_url):
    """The database read-only for new sessions until `spell.end()`."""

    class Spell:
        def end(self) -> None:
            read_only(database_url, False)

    read_only(database_url, True)
    yield Spell()
    read_only(database_url, False)


def test_the_budget_ledger_drops_a_read_only_session(database_url, spell):
    ledger = PostgresBudgets(database_url)
    seen = Observed(5000, 4000, NOW + timedelta(hours=1))
    try:
        with pytest.raises(DatabaseUnavailable, match="read-only"):
            ledger.observe("user:ann", "graphql", seen, None, NOW)
        spell.end()
        ledger.observe("user:ann", "graphql", seen, None, NOW)
        assert ledger.snapshot(NOW)[0]["remaining"] == 4000
    finally:
        ledger.close()


def test_the_registry_drops_a_read_only_session(database_url, spell):
    registry = Registry(database_url)
    try:
        with pytest.raises(StorageError, match="read-only"):
            registry.track([Entry("acme/widgets", "hot")], NOW)
        spell.end()
        registry.track([Entry("acme/widgets", "hot")], NOW)
        assert [r["repository"] for r in registry.tracked()] == ["acme/widgets"]
    finally:
        registry.close()


def test_the_job_store_renews_its_pool_after_a_read_only_spell(database_url, spell):
    store = db.open_store(Settings(), url=database_url)
    try:
        spec = JobSpec.create("pr-reviews", "acme/widgets", days=1)
        with pytest.raises(DatabaseUnavailable, match="read-only"):
            store.enqueue(spec, NOW, route=Route("local", "explicit", "test"))
        spell.end()
        # As a worker does (Patient): each refusal renews the pool, so once the database
        # is writable the next try succeeds (its sessions would otherwise stay read-only
        # for the pool's hour-long connection lifetime).
        again = patiently(
            lambda: store.enqueue(spec, NOW, route=Route("local", "explicit", "t")), 10
        )
        assert again.created
    finally:
        store.close()
