"""Fixtures: one real PostgreSQL per session, one fresh database per test (template clone)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

import jobstore
from jobstore.embedded import Server
from jobstore.settings import Settings
from jobstore.store import JobStore

ROOT = Path(__file__).resolve().parent.parent
# The sandbox GitHub's fixtures (world, clock, sandbox, gh, rigs, served) for every package.
pytest_plugins = ["tests.sandbox_fixtures"]
TEMPLATE = "jobstore_template" + (
    f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
)


def with_dbname(url: str, dbname: str) -> str:
    """The same server URL with another database (a URL, as DATABASE_URL must be)."""
    return urlsplit(url)._replace(path=f"/{dbname}").geturl()


def server_home() -> Path:
    """Where this test process's embedded server lives (one per pytest-xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return ROOT / ".jobstore" / (f"test-{worker}" if worker else "test")


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """TEST_DATABASE_URL, else an embedded server under .jobstore/test (one per
    pytest-xdist worker: .jobstore/test-gw0, ...), stopped when the session ends if the
    session started it (its cluster stays, so the next run starts it in a second)."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    server = Server(server_home())
    ours = not server.is_running()
    url = server.start()
    with psycopg.connect(url, autocommit=True) as conn:  # a server from before it was added
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    if row is None or "pg_stat_statements" not in row[0]:
        server.stop()
        url = server.start()
    yield url
    if ours:
        server.stop()


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = with_dbname(server_url, TEMPLATE)
    jobstore.migrate(url)
    return url


@pytest.fixture
def database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A database of its own for this test, already migrated."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    yield with_dbname(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def store(database_url: str, settings: Settings) -> Iterator[JobStore]:
    app = jobstore.open_store(settings, url=database_url)
    yield app
    app.close()


def assert_refused(result: Any, message: str) -> None:
    """Bad input, as every script answers it: exit 2 and one line naming the problem."""
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events").fetchone()
    assert row is not None
    return int(row[0])
