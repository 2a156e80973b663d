"""A session keeps the read-only default it connected with: connections made while the
database was read-only (a demoted primary) are dropped on their first refused write, so
every holder of the database component, and the store, write again once it is writable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest

import jobstore
from capture.freshness.registry import Entry, Registry
from capture.github.budgets import Observed
from capture.github.ledger import PostgresBudgets
from jobstore.boundary import patiently
from jobstore.db import Database
from jobstore.errors import DatabaseReadOnly, DatabaseUnavailable
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


def test_a_component_of_its_own_drops_a_read_only_session(database_url, spell):
    db = Database(database_url, "test")
    try:
        with pytest.raises(DatabaseReadOnly, match="test: the database is read-only"):
            db.execute(
                "INSERT INTO alert_state (rule, key, detail, firing_since) "
                "VALUES ('r', 'k', 'd', now())"
            )
        spell.end()
        assert (
            db.execute(
                "INSERT INTO alert_state (rule, key, detail, firing_since) "
                "VALUES ('r', 'k', 'd', now())"
            )
            == 1
        )
    finally:
        db.close()


def test_a_component_on_the_stores_connections_drops_a_read_only_session(database_url, spell):
    """The budget ledger and the registry draw on the store's pool: a refusal renews it."""
    store = jobstore.open_store(Settings(), url=database_url)
    ledger = PostgresBudgets(store.database("budgets"))
    registry = Registry(store.database("registry"))
    seen = Observed(5000, 4000, NOW + timedelta(hours=1))
    try:
        with pytest.raises(DatabaseUnavailable, match="budgets: the database is read-only"):
            ledger.observe("user:ann", "graphql", seen, None, NOW)
        with pytest.raises(DatabaseUnavailable, match="registry: the database is read-only"):
            registry.track([Entry("acme/widgets", "hot")], NOW)
        spell.end()
        ledger.observe("user:ann", "graphql", seen, None, NOW)
        assert ledger.snapshot(NOW)[0]["remaining"] == 4000
        registry.track([Entry("acme/widgets", "hot")], NOW)
        assert [r["repository"] for r in registry.tracked()] == ["acme/widgets"]
    finally:
        store.close()


def test_the_job_store_renews_its_pool_after_a_read_only_spell(database_url, spell):
    store = jobstore.open_store(Settings(), url=database_url)
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
