"""Fixtures of the capture tests: the freshness loop on one clock (a test module gives
the `world`)."""

from __future__ import annotations

import pytest

from capture.freshness.loop import plan_once
from capture.freshness.registry import Registry
from capture.freshness.rules import FreshnessSettings
from jobstore.dispatcher import Dispatcher

LOCAL = FreshnessSettings(fast_lane="local", bulk_lane="local", refresh_lane="local", reserve=0)


@pytest.fixture
def loop(rigs, world, database_url):
    """A planner pass and a local worker that runs whatever is queued, on one clock."""
    rig = rigs(world)
    registry = Registry(rig.store.database("registry"))
    dispatcher = Dispatcher(rig.store, {}, {})

    class Loop:
        def __init__(self) -> None:
            self.rig, self.registry, self.gh = rig, registry, rig.gh(False)

        def plan(self, settings: FreshnessSettings = LOCAL):
            return plan_once(registry, dispatcher, self.gh, rig.clock(), settings)

        def work(self) -> list:
            """Runs queued jobs (and the child jobs and parents they wake) until none is left."""
            results = []
            while True:
                waiting = rig.store.heads.routed(["local"])
                if not waiting:
                    return results
                results += [rig.run(job_id) for job_id in waiting]

        def probe_points(self) -> int:
            """What the sandbox charged for probe queries."""
            return sum(
                e.points
                for e in rig.sandbox.ledger.entries
                if e.kind == "graphql" and e.extra.get("operation") == "Probe"
            )

    return Loop()
