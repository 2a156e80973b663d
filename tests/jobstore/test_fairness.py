"""Fair turns (schema/025): a giant backfill or a noisy workspace takes turns with the
rest of the fleet instead of queueing ahead of it; priority still comes first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from jobstore.routing import Route
from jobstore.spec import JobSpec

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
LOCAL = Route("local", "explicit", "test")


def claimed_in_turn(store, n: int, now: datetime) -> list:
    """The next `n` jobs of the local lane, one claim at a time (the order workers see)."""
    return [store.claim_next("local", "w", now)[0].id for _ in range(n)]


def spec(repo: str, priority: str = "low", **params) -> JobSpec:
    return JobSpec.create("pr-reviews", repo, days=1, priority=priority, params=params)


def test_a_giant_backfills_children_take_turns_with_small_repositories(store):
    children = [
        JobSpec.create("pr-reviews", "big/mono", pr_numbers=[n], priority="low")
        for n in range(1, 201)
    ]
    store.enqueue_many(children, T0, LOCAL)  # one batch: the backfill's split
    later = T0 + timedelta(minutes=2)
    small = [store.enqueue(spec(f"small{i}/r"), later, LOCAL).job_id for i in range(5)]
    urgent = store.enqueue(spec("big/mono", "high"), later, LOCAL).job_id
    taken = claimed_in_turn(store, 10, later)
    assert taken[0] == urgent  # real-time work keeps its head start
    assert set(small) <= set(taken[:8]), "small repositories waited behind the backfill"
    # without fair turns (by age alone) none of them would be in the first 200


def test_a_noisy_workspace_does_not_starve_a_quiet_one(store):
    noisy = [spec(f"n{i}/r", workspace="noisy") for i in range(60)]
    store.enqueue_many(noisy, T0, LOCAL)
    quiet = store.enqueue(spec("q/r", workspace="quiet"), T0 + timedelta(minutes=1), LOCAL)
    taken = claimed_in_turn(store, 10, T0)
    assert quiet.job_id in taken[:8]


def test_a_turn_is_counted_with_an_index_and_kept_on_later_events(store, database_url):
    job_id = store.enqueue(spec("a/b", workspace="w1"), T0, LOCAL).job_id
    store.claim(job_id, "w", T0)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT share, turn_at, created_at FROM job_heads WHERE job_id = %s", (job_id,)
        ).fetchone()
        conn.execute(  # a year of finished jobs, and some waiting
            "INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, "
            "attempt, version, dedupe_key, created_at, last_event_at, share, turn_at) "
            "SELECT gen_random_uuid(), 'pr-reviews', 'o' || (g % 300) || '/r' || (g % 3000), "
            "CASE WHEN g % 100 = 0 THEN 'routed' ELSE 'completed' END, 'local', 'low', 1, 3, "
            "'k' || g, now(), now(), 'o' || (g % 300), now() FROM generate_series(1, 60000) g"
        )
        conn.execute("ANALYZE job_heads")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT * FROM jobstore_waiting('a/b', 'w1', 'low')"
            ).fetchall()
        )
        inlined = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT count(*) FROM (SELECT 1 FROM job_heads WHERE repository = 'a/b' "
                "AND priority = 'low' AND status IN ('queued', 'routed', 'dispatched', "
                "'retry_scheduled') LIMIT 1000) r"
            ).fetchall()
        )
    assert row[0] == "w1"
    assert row[1] == row[2]  # nothing of its own was waiting: its turn is now
    assert plan
    assert "job_heads_waiting_repository" in inlined
    assert "Seq Scan" not in inlined
