"""Races between real processes: one winner per attempt, one job per dedupe key."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime

import psycopg
import pytest

import jobstore
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec

pytestmark = pytest.mark.slow
PROCESSES = 8
NOW = datetime(2026, 11, 1, tzinfo=UTC)
LOCAL = Route("local", "explicit", "test")


def open_store(url: str):
    return jobstore.open_store(Settings(pool_size=2), url=url)


def claim_all(url: str, ids: list[str], worker: str, barrier) -> list[str]:
    store = open_store(url)
    random.Random(worker).shuffle(ids)
    barrier.wait()
    won = [job_id for job_id in ids if store.claim(job_id, worker, NOW).won]
    store.close()
    return won


def claim_batches(url: str, worker: str, barrier) -> list[str]:
    store = open_store(url)
    barrier.wait()
    won: list[str] = []
    misses = 0
    while misses < 3:  # the queue may look empty for a moment while others commit
        batch = store.claim_next("local", worker, NOW, limit=10)
        misses = 0 if batch else misses + 1
        won.extend(str(job.id) for job in batch)
    store.close()
    return won


def enqueue_same(url: str, barrier) -> str:
    store = open_store(url)
    spec = JobSpec.create("pr-reviews", "acme/widgets", days=1)
    barrier.wait()
    job_id = str(store.enqueue(spec, NOW, route=LOCAL).job_id)
    store.close()
    return job_id


def run(target, args_list: list[tuple]) -> list:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(len(args_list))
    with ctx.Pool(len(args_list)) as pool:
        results = [pool.apply_async(target, (*args, barrier)) for args in args_list]
        return [r.get(timeout=120) for r in results]


def started_per_job(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id::text, count(*) FROM jobs_events "
            "WHERE topic = 'jobstore.domain:Job.Started' GROUP BY 1"
        ).fetchall()
    return dict(rows)


@pytest.fixture
def routed_jobs(store) -> list[str]:
    specs = [JobSpec.create("pr-reviews", f"acme/r{n}", days=1) for n in range(200)]
    return [str(e.job_id) for e in store.enqueue_many(specs, NOW, route=LOCAL)]


def test_eight_processes_claiming_the_same_jobs_start_each_once(database_url, routed_jobs):
    wins = run(claim_all, [(database_url, list(routed_jobs), f"p{n}") for n in range(PROCESSES)])
    claimed = [job_id for won in wins for job_id in won]
    assert sorted(claimed) == sorted(routed_jobs)  # every job won by exactly one process
    assert set(started_per_job(database_url).values()) == {1}
    assert len(started_per_job(database_url)) == 200


def test_batch_claims_racing_start_each_job_once(database_url, routed_jobs):
    wins = run(claim_batches, [(database_url, f"p{n}") for n in range(4)])
    claimed = [job_id for won in wins for job_id in won]
    assert sorted(claimed) == sorted(routed_jobs)
    assert set(started_per_job(database_url).values()) == {1}


def test_eight_processes_enqueuing_one_dedupe_key_make_one_job(database_url, store):
    ids = run(enqueue_same, [(database_url,)] * PROCESSES)
    assert len(set(ids)) == 1
    with psycopg.connect(database_url) as conn:
        queued = conn.execute(
            "SELECT count(*) FROM jobs_events WHERE topic = 'jobstore.domain:Job.Queued'"
        ).fetchone()
    assert queued == (1,)


def test_racing_enqueues_after_the_job_finished_make_one_new_job(database_url, store):
    spec = JobSpec.create("pr-reviews", "acme/widgets", days=1)
    old = store.enqueue(spec, NOW, route=LOCAL).job_id
    store.claim(old, "w", NOW)
    store.complete(old, items=1, now=NOW)
    ids = set(run(enqueue_same, [(database_url,)] * PROCESSES))
    assert len(ids) == 1
    assert old not in ids
