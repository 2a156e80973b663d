"""JobStore commands against a real PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg
import pytest
from freezegun import freeze_time

from jobstore.domain import RetryPolicy, Status
from jobstore.errors import InvalidTransition, JobNotFound
from jobstore.heads import ROUTED_CHILDREN, UNFINISHED_CHILDREN
from jobstore.routing import Route
from jobstore.settings import Settings
from jobstore.spec import JobSpec
from tests.conftest import count_events

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LOCAL = Route("local", "explicit", "operator's choice")


def spec(n: int = 1, **kw) -> JobSpec:
    return JobSpec.create("pr-reviews", f"acme/repo{n}", days=1, **kw)


def running(store, n: int = 1, now=T0):
    job_id = store.enqueue(spec(n), now, route=LOCAL).job_id
    assert store.claim(job_id, "w1", now).won
    return job_id


def heads(url: str, job_id) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status, lane, attempt, version FROM job_heads WHERE job_id = %s", (job_id,)
        ).fetchone()


def test_enqueue_records_queued_with_resolved_window(store):
    job_id = store.enqueue(spec(), T0).job_id
    job = store.get(job_id)
    assert job.status is Status.QUEUED
    assert (job.since, job.until) == (T0 - timedelta(days=1), T0)
    assert [type(e).__name__ for e in store.history(job_id)] == ["Queued"]


def test_enqueue_is_idempotent_while_the_job_is_active(store, database_url):
    first = store.enqueue(spec(), T0)
    second = store.enqueue(spec(), T0 + timedelta(minutes=5))
    assert first.created
    assert not second.created
    assert second.job_id == first.job_id
    assert count_events(database_url) == 2  # Queued and the dedupe slot, nothing more


def test_enqueue_after_the_job_finished_makes_a_new_job(store):
    old = running(store)
    store.complete(old, items=3, now=T0)
    new = store.enqueue(spec(), T0 + timedelta(hours=1), route=LOCAL)
    assert new.created
    assert new.job_id != old
    assert store.enqueue(spec(), T0 + timedelta(hours=2)).job_id == new.job_id


def test_enqueue_many_dedupes_within_the_batch_and_routes(store):
    results = store.enqueue_many([spec(1), spec(2), spec(1)], T0, route=LOCAL)
    assert [r.created for r in results] == [True, True, False]
    assert results[2].job_id == results[0].job_id
    assert store.get(results[1].job_id).lane == "local"


def test_lifecycle_writes_every_event_and_keeps_heads_current(store, database_url):
    job_id = store.enqueue(spec(), T0).job_id
    store.route(job_id, Route("inngest", "recent", "real-time"), T0)
    store.dispatched(job_id, "evt-1", T0)
    assert store.claim(job_id, "w1", T0, attempt=1).won
    store.progress(job_id, 5, total=10, cursor="c5", api_points=2, attempt=1, now=T0)
    store.complete(job_id, items=10, api_points=3, attempt=1, now=T0)
    names = [type(e).__name__ for e in store.history(job_id)]
    assert names == ["Queued", "Routed", "Dispatched", "Started", "Progressed", "Completed"]
    job = store.get(job_id)
    assert (job.status, job.api_points, job.items) == (Status.COMPLETED, 5, 10)
    assert heads(database_url, job_id) == ("completed", "inngest", 1, 6)


def test_second_claim_on_same_attempt_loses_with_a_reason(store):
    job_id = store.enqueue(spec(), T0, route=LOCAL).job_id
    assert store.claim(job_id, "w1", T0).won
    lost = store.claim(job_id, "w2", T0)
    assert not lost.won
    assert lost.reason == "already running by w1"


def test_claim_of_an_ended_attempt_loses(store):
    job_id = running(store)
    store.fail(job_id, "network", "reset", now=T0)
    assert store.claim(job_id, "late", T0, attempt=1).reason == "attempt 1 is over"


def test_worker_of_an_ended_attempt_cannot_complete_it(store):
    job_id = running(store)
    store.fail(job_id, "network", "reset", now=T0)
    store.route(job_id, LOCAL, T0 + timedelta(minutes=5))
    assert store.claim(job_id, "w2", T0 + timedelta(minutes=5), attempt=2).won
    with pytest.raises(InvalidTransition, match="on attempt 2: cannot complete attempt 1"):
        store.complete(job_id, items=1, attempt=1, now=T0)


def test_illegal_transition_names_job_state_and_action(store):
    job_id = store.enqueue(spec(), T0).job_id
    with pytest.raises(InvalidTransition) as err:
        store.complete(job_id, items=1, now=T0)
    assert str(err.value) == f"job {job_id} is queued: cannot complete"


def test_unknown_job_raises_job_not_found(store):
    with pytest.raises(JobNotFound, match="no job with id"):
        store.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(JobNotFound):
        store.get("not-a-uuid")


@pytest.mark.parametrize("settings", [Settings(retry=RetryPolicy(max_attempts=20))])
@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 15, 30), (2, 30, 60), (3, 60, 120), (10, 1800, 3600)],
)
def test_retry_backoff_is_exponential_with_jitter_and_capped(store, failures, low, high):
    job_id = running(store)
    store.rng = random.Random(failures)
    now = T0
    for n in range(1, failures + 1):
        with freeze_time(now):
            job = store.fail(job_id, "http_5xx", "502", attempt=n)
        assert job.status is Status.RETRY_SCHEDULED
        if n < failures:
            now = job.not_before
            store.route(job_id, LOCAL, now)
            assert store.claim(job_id, "w", now, attempt=n + 1).won
    delay = (job.not_before - now).total_seconds()
    assert low <= delay <= high
    assert job.attempt == failures + 1


@pytest.mark.parametrize("settings", [Settings(retry=RetryPolicy(max_attempts=2))])
def test_failure_is_final_once_attempts_are_spent(store):
    job_id = running(store)
    store.fail(job_id, "http_5xx", "502", now=T0)
    store.route(job_id, LOCAL, T0 + timedelta(hours=1))
    store.claim(job_id, "w", T0 + timedelta(hours=1))
    job = store.fail(job_id, "http_5xx", "502 again", now=T0 + timedelta(hours=1))
    assert job.status is Status.FAILED
    assert job.is_final


def test_permanent_failure_is_final_at_once(store):
    job = store.fail(running(store), "not_found", "404", retryable=False, now=T0)
    assert job.status is Status.FAILED
    assert [type(e).__name__ for e in store.history(job.id)][-1] == "Failed"


def test_due_retries_respect_not_before(store):
    with freeze_time(T0):
        job = store.fail(running(store), "network", "reset")
    assert store.due_retries(job.not_before - timedelta(seconds=1)) == []
    assert store.due_retries(job.not_before) == [job.id]


def test_retry_resumes_from_the_last_checkpoint(store):
    job_id = running(store)
    store.progress(job_id, 100, cursor="page-4", now=T0)
    store.progress(job_id, 120, now=T0)  # a checkpoint without a cursor keeps the last one
    store.fail(job_id, "network", "reset", now=T0)
    assert store.resume_cursor(job_id) == "page-4"
    retry = store.history(job_id)[-1]
    assert type(retry).__name__ == "RetryScheduled"
    assert retry.cursor == "page-4"


def test_reschedule_at_rate_limit_reset_is_not_a_failure(store):
    job_id = running(store)
    store.progress(job_id, 50, cursor="c50", now=T0)
    reset = T0 + timedelta(minutes=40)
    job = store.reschedule(job_id, reset, attempt=1, now=T0)
    assert (job.status, job.not_before, job.failures, job.attempt) == (
        Status.RETRY_SCHEDULED,
        reset,
        0,
        2,
    )


def test_cancel_from_any_active_state_and_not_after_the_end(store):
    job_id = running(store)
    assert store.cancel(job_id, "operator", T0).status is Status.CANCELLED
    with pytest.raises(InvalidTransition, match="is cancelled: cannot cancel"):
        store.cancel(job_id, "again", T0)


def test_sweep_fails_jobs_silent_past_their_lane_lease(store):
    lease = store.settings.lease("local")
    quiet = running(store, 1, T0)
    busy = running(store, 2, T0)
    store.progress(busy, 1, now=T0 + timedelta(seconds=lease - 10))
    swept = store.sweep_stale(T0 + timedelta(seconds=lease + 1))
    assert swept == [quiet]
    job = store.get(quiet)
    assert job.status is Status.RETRY_SCHEDULED
    assert job.error.startswith("stale: no event from w1")
    assert store.get(busy).status is Status.RUNNING


def test_sweep_leaves_a_job_just_inside_its_lease(store):
    running(store)
    assert store.sweep_stale(T0 + timedelta(seconds=store.settings.lease("local"))) == []


def test_claim_next_takes_only_its_lane_best_priority_first(store):
    store.enqueue(spec(1, priority="low"), T0, route=LOCAL)
    high = store.enqueue(spec(2, priority="high"), T0, route=LOCAL).job_id
    store.enqueue(spec(3), T0, route=Route("inngest", "r", "r"))
    got = store.claim_next("local", "w", T0, limit=1)
    assert [job.id for job in got] == [high]
    taken = store.claim_next("local", "w", T0, limit=10)
    assert len(taken) == 1
    assert store.claim_next("local", "w", T0, limit=10) == []


def test_a_lost_version_race_leaves_heads_untouched(store, database_url):
    job_id = store.enqueue(spec(), T0, route=LOCAL).job_id
    stale_copy = store.get(job_id)
    assert store.claim(job_id, "w1", T0).won
    stale_copy.cancel("too late", T0)
    from eventsourcing.persistence import IntegrityError

    with pytest.raises(IntegrityError):
        store.save_jobs(stale_copy)
    assert heads(database_url, job_id)[0] == "running"


def test_dropped_database_connections_are_retried(store, database_url):
    """No check before each use: a dead pooled connection fails its statement, is dropped
    by the pool, and the statement runs again on a new one."""
    job_id = store.enqueue(spec(1), T0, route=LOCAL).job_id
    with psycopg.connect(database_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed[0] >= 1  # the store's pooled connections are gone
    assert store.claim(job_id, "w1", T0).won
    assert store.enqueue(spec(2), T0).created
    assert [type(e).__name__ for e in store.history(job_id)] == ["Queued", "Routed", "Started"]


def notified_job(store, repo="acme/notified"):
    spec = JobSpec.create("pr-reviews", repo, days=1)
    job_id = store.enqueue(spec, T0, route=LOCAL).job_id
    return store.get(job_id)


def test_a_notified_claim_starts_the_job_without_reading_it(store):
    job = notified_job(store)
    claim = store.claim_notified(job.id, job.version, job.attempt, "w1", "local", T0)
    assert claim.won
    started = store.get(job.id)
    assert (started.status.value, started.worker, started.version) == (
        "running",
        "w1",
        job.version + 1,
    )
    assert store.heads.head_versions([job.id]) == {job.id: job.version + 1}
    assert store.heads.count("running") == 1


def test_a_notified_claim_after_the_job_moved_on_reads_it_and_decides(store):
    job = notified_job(store)
    store.route(job.id, LOCAL, T0)  # routed again: the notification's version is stale
    assert store.claim_notified(job.id, job.version, job.attempt, "w1", "local", T0).won
    other = notified_job(store, "acme/other")
    store.cancel(other.id, "not needed", T0)
    lost = store.claim_notified(other.id, other.version, other.attempt, "w2", "local", T0)
    assert (lost.won, lost.reason) == (False, "already cancelled")


def test_only_one_of_two_notified_claims_wins(store):
    job = notified_job(store)
    first = store.claim_notified(job.id, job.version, job.attempt, "w1", "local", T0)
    second = store.claim_notified(job.id, job.version, job.attempt, "w2", "local", T0)
    assert (first.won, second.won) == (True, False)
    assert second.reason == "already running by w1"


def test_a_child_ending_asks_an_index_of_the_unfinished_siblings_only(store, database_url):
    """A monorepo backfill's 4,000 children: each one's end asks whether a sibling is
    still unfinished, reading neither the siblings that ended nor the fleet's other
    active jobs."""
    parent, other = uuid4(), uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(  # the other's 4,000 waiting children, 5,000 other active jobs, 20
            # ended children of `parent` and 31,000 of 2,000 other parents
            "INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, "
            "attempt, version, dedupe_key, parent_id, created_at, last_event_at, turn_at) "
            "SELECT gen_random_uuid(), 'pr-reviews', 'big/mono', "
            "CASE WHEN g <= 9000 THEN 'routed' WHEN g %% 7 = 0 THEN 'failed' "
            "ELSE 'completed' END, 'local', 'low', 1, 3, 'k' || g, "
            "CASE WHEN g <= 4000 THEN %s::uuid WHEN g <= 9000 THEN NULL "
            "WHEN g <= 9020 THEN %s::uuid ELSE md5((g / 15)::text)::uuid END, "
            "now(), now(), now() FROM generate_series(1, 40000) g",
            (other, parent),
        )
        conn.execute("ANALYZE job_heads")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + UNFINISHED_CHILDREN, (parent,)))
        routed = "\n".join(r[0] for r in conn.execute("EXPLAIN " + ROUTED_CHILDREN, (other, 4)))
    assert "job_heads_unfinished_children" in plan, plan
    # an Actions run of the other's backfill plans its next four legs from the same index
    assert "using job_heads_unfinished_children" in routed, routed
    assert len(store.heads.routed_children(other, 4)) == 4
    assert store.heads.routed_children(parent, 4) == []
    assert not store.heads.unfinished_children(parent)  # all its children ended
    assert store.heads.unfinished_children(other)
    assert not store.heads.unfinished_children(uuid4())
