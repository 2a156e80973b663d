"""A mixed, deterministic job history for view tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from jobstore.routing import LANES, Route
from jobstore.spec import JobSpec
from jobstore.store import JobStore


def make_history(store: JobStore, jobs: int, start: datetime, seed: int = 1) -> list:
    """Enqueues `jobs` jobs and walks each through a different life; returns their ids."""
    rng = random.Random(seed)
    ids = []
    for n in range(jobs):
        now = start + timedelta(minutes=n)
        lane = LANES[n % 3]
        spec = JobSpec.create(
            "pr-reviews",
            f"acme/repo{n % 7}",
            since=now - timedelta(days=2 + n % 5),
            until=now - timedelta(days=1 + n % 5),
            trigger=rng.choice(["manual", "scheduled"]),
        )
        job_id = store.enqueue(spec, now, route=Route(lane, "test", "t")).job_id
        ids.append(job_id)
        fate = n % 6
        if fate == 0:
            continue  # stays routed
        if lane != "local":
            store.dispatched(job_id, f"run-{n} https://example.invalid/runs/{n}", now)
        store.claim(job_id, f"w{n % 3}", now + timedelta(seconds=5))
        for page in range(rng.randint(0, 4)):
            store.progress(
                job_id,
                (page + 1) * 10,
                total=50,
                cursor=f"p{page}",
                api_points=2,
                now=now + timedelta(seconds=10 + page),
            )
        end = now + timedelta(seconds=rng.randint(30, 400))
        if fate in (1, 2, 3):
            store.complete(job_id, items=50, api_points=1, now=end)
        elif fate == 4:
            store.fail(job_id, "http_5xx", "502 Bad Gateway", now=end)
        else:
            store.cancel(job_id, "operator", end)
    return ids
