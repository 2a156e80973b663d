"""A capture rig: the job store, the sandbox as GitHub, storage, and a clock sleeps advance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from capture.attempt import Result, run_job
from capture.github.client import GitHub
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

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds=seconds)

    def github(self, realtime: bool) -> GitHub:
        client = httpx.Client(
            transport=self.sandbox.transport(),
            base_url="http://sandbox.invalid",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        return GitHub(client, self.settings, realtime=realtime, sleep=self.sleep, now=self.clock)

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
    options = Options(tokens={TOKEN: 1_000_000}, node_count=node_count)
    sandbox = Sandbox(world, options, clock=clock)
    config = CaptureSettings(
        token=Secret(TOKEN),
        api_url="http://sandbox.invalid",
        graphql_url="http://sandbox.invalid/graphql",
        **settings,
    )
    return Rig(store, Storage(url), sandbox, clock, config)
