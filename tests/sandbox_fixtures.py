"""Sandbox fixtures: a small deterministic world, a client over the in-process transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devtools.sandbox import DEFAULT_TOKEN, Options, Sandbox, World

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


class Clock:
    """A settable clock for the sandbox (time comes in as an argument, never slept)."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(scope="session")
def world() -> World:
    world = World(seed=7, now=NOW)
    world.add_repository("acme/widgets", 400, 365)
    return world


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(world, clock) -> Sandbox:
    """The sandbox, its lean GraphQL executor checked against graphql-core's answers."""
    sandbox = Sandbox(world, Options(executor="compare"), clock=clock)
    yield sandbox
    assert sandbox.graphql.differences == []


@pytest.fixture
def gh(sandbox) -> httpx.Client:
    return httpx.Client(
        transport=sandbox.transport(),
        base_url="http://sandbox.invalid",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    )


def gql(client: httpx.Client, query: str, **variables) -> httpx.Response:
    return client.post("/graphql", json={"query": query, "variables": variables})


@pytest.fixture
def rigs(store, database_url, clock):
    """Makes capture rigs on this test's database (on the store's connections)."""
    from tests.capture.rig import make_rig

    made = []

    def make(world: World, **settings):
        rig = make_rig(store, database_url, world, clock, **settings)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        if rig._factory is not None:
            rig._factory.close()
    for rig in made:  # the lean executor answered every document as graphql-core does
        assert rig.sandbox.graphql.differences == []


RUN_NAME = "capture ${{ inputs.job_id }} #${{ inputs.attempt }}"
JOB_INPUTS = {"job_id": {"required": True}, "attempt": {"required": True}}


@pytest.fixture
def served(world):
    """The sandbox as a real local HTTP server playing GitHub, Actions and Inngest."""
    from devtools.sandbox import DEFAULT_EVENT_KEY

    sandbox = Sandbox(world, Options())
    for workflow in ("capture-job.yml", "historical-sync.yml"):
        sandbox.register_workflow("acme/ops", workflow, JOB_INPUTS, run_name=RUN_NAME)
    running = sandbox.serve()
    sandbox.env = {
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_API_URL": running.url,
        "GITHUB_GRAPHQL_URL": f"{running.url}/graphql",
        "INNGEST_EVENT_KEY": DEFAULT_EVENT_KEY,
        "INNGEST_EVENT_API_BASE_URL": running.url,
        "CAPTURE_ACTIONS_REPOSITORY": "acme/ops",
    }
    yield sandbox
    running.stop()
