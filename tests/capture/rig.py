"""A capture rig: the job store, the sandbox as GitHub, storage, and a clock sleeps advance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from capture.attempt import Result, run_job
from capture.github.budgets import MemoryBudgets
from capture.github.client import GitHub, GitHubFactory
from capture.settings import CaptureSettings, Secret
from capture.storage import Storage
from devtools.sandbox import Options, Sandbox, World
from jobstore.routing import Route
from jobstore.spec import JobSpec
from jobstore.store import JobStore
from tests.sandbox_fixtures import Clock

TOKEN = "ghp_sandboxSECRETtoken0123456789abcdef"
LOCAL = Route("local", "explicit", "test")


@dataclass
class Rig:
    store: JobStore
    storage: Storage
    sandbox: Sandbox
    clock: Clock
    settings: CaptureSettings
    slept: list[float] = field(default_factory=list)
    _factory: GitHubFactory | None = None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds=seconds)

    @property
    def github(self) -> GitHubFactory:
        """The process's GitHub factory (made again when the settings change)."""
        if self._factory is None or self._factory.settings is not self.settings:
            self._factory = GitHubFactory(
                self.settings,
                MemoryBudgets(),
                transport=self.sandbox.transport(),
                sleep=self.sleep,
                now=self.clock,
            )
        return self._factory

    def gh(self, realtime: bool = False) -> GitHub:
        """One job's clients, as a worker makes them."""
        return self.github.github(realtime=realtime)

    def enqueue(self, job_type: str, repository: str = "acme/widgets", **kwargs: Any):
        spec = JobSpec.create(job_type, repository, **kwargs)
        return self.store.enqueue(spec, self.clock(), route=LOCAL).job_id

    def run(self, job_id: Any, **settings: Any) -> Result:
        if settings:
            self.settings = CaptureSettings(**{**self.settings.__dict__, **settings})
        return run_job(
            self.store,
            job_id,
            worker="w",
            storage=self.storage,
            settings=self.settings,
            github=self.github,
            now=self.clock,
        )

    def retry_now(self, job_id: Any) -> None:
        """Moves the clock to the job's retry time and routes it again (the sweeper's part)."""
        job = self.store.get(job_id)
        self.clock.now = max(self.clock.now, job.not_before + timedelta(seconds=1))
        self.store.route(job_id, LOCAL, self.clock())


def make_rig(
    store: JobStore,
    url: str,
    world: World,
    clock: Clock,
    node_count: str = "strict",
    **settings: Any,
) -> Rig:
    """A rig whose sandbox counts `nodes(ids:)` by `node_count` (strict or lenient)."""
    # every answer the capture gets is checked against graphql-core's (the rigs fixture)
    options = Options(tokens={TOKEN: 1_000_000}, node_count=node_count, executor="compare")
    sandbox = Sandbox(world, options, clock=clock)
    config = CaptureSettings(
        token=Secret(TOKEN),
        api_url="http://sandbox.invalid",
        graphql_url="http://sandbox.invalid/graphql",
        **settings,
    )
    return Rig(store, Storage(store.database("storage")), sandbox, clock, config)
