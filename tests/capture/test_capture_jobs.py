"""Capture jobs under faults, limits, splitting, increments and restarts."""

from __future__ import annotations

import itertools
import logging
from datetime import timedelta

import psycopg
import pytest

from devtools.sandbox import World
from devtools.sandbox.faults import Fault
from jobstore.domain import Status
from jobstore.spec import GITHUB_EPOCH, JobSpec
from tests.capture.expected import expected, stored
from tests.capture.rig import TOKEN
from tests.sandbox_fixtures import NOW


@pytest.fixture
def world() -> World:  # each test may change it, so a fresh one (small: fast to build)
    world = World(seed=11, now=NOW)
    world.add_repository("acme/widgets", 150, 120)
    return world


def events(store, job_id) -> list[str]:
    return [type(e).__name__ for e in store.history(job_id)]


def assert_complete(world, url) -> None:
    want, got = expected(world, "acme/widgets"), stored(url)
    for table in want:
        assert got[table] == want[table], table


def test_a_502_burst_shrinks_the_page_and_the_job_still_completes(rigs, world, database_url):
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:502:3")
    result = rig.run(rig.enqueue("historical-sync", days=200))
    assert result.outcome == "completed"
    assert_complete(world, database_url)
    statuses = [e.status for e in rig.sandbox.ledger.entries if e.kind == "graphql"]
    assert statuses.count(502) == 3


def test_repeated_502s_fall_back_to_rest_and_say_so(rigs, world, database_url):
    rig = rigs(world)
    rig.sandbox.faults.add(Fault("graphql", "502", count=50))
    job_id = rig.enqueue("pr-reviews", pr_numbers=[1, 2, 3])
    result = rig.run(job_id)
    assert result.outcome == "completed"
    assert rig.store.get(job_id).items == 3
    assert rig.sandbox.ledger.summary("rest")["requests"] > 0
    completed = rig.store.history(job_id)[-1]
    assert completed.summary["fallbacks"] >= 1


def test_secondary_limit_is_waited_out_as_retry_after_says(rigs, world, database_url):
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:secondary:30s")
    result = rig.run(rig.enqueue("historical-sync", days=200))
    assert result.outcome == "completed"
    assert rig.slept
    assert rig.slept[0] == 31
    assert_complete(world, database_url)


def test_a_partial_error_on_one_pull_request_is_fetched_through_rest(rigs, world, database_url):
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:partial:pr=7")
    job_id = rig.enqueue("historical-sync", days=200)
    assert rig.run(job_id).outcome == "completed"
    assert_complete(world, database_url)
    rest = [e.path for e in rig.sandbox.ledger.entries if e.kind == "rest"]
    assert "/repos/acme/widgets/pulls/7/files" in rest
    assert rig.store.history(job_id)[-1].summary["fallbacks"] == 1


def test_a_pull_request_github_nulls_whole_is_fetched_through_rest(rigs, world, database_url):
    """An error under a non-null field (comments) nulls the whole pull request node: it is
    not skipped as if captured, it goes to REST."""
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:partial:pr=7,comments")
    job_id = rig.enqueue("historical-sync", days=200)
    assert rig.run(job_id).outcome == "completed"
    assert_complete(world, database_url)
    rest = [e.path for e in rig.sandbox.ledger.entries if e.kind == "rest"]
    assert "/repos/acme/widgets/issues/7/comments" in rest
    assert "/repos/acme/widgets/pulls/7/files" in rest  # every part of it: the node was null


def test_budget_exhausted_midway_reschedules_at_the_reset_then_finishes(rigs, world, database_url):
    rig = rigs(world, batch_size=20)
    job_id = rig.enqueue("historical-sync", days=200)
    rig.sandbox.options.tokens[TOKEN] = 6  # the index pass and a few batches, then nothing
    first = rig.run(job_id)
    assert first.outcome == "rescheduled"
    job = rig.store.get(job_id)
    assert job.status.value == "retry_scheduled"
    assert job.failures == 0  # a rate limit is not a failure
    reset = NOW + timedelta(hours=1)
    assert reset <= job.not_before <= reset + timedelta(seconds=60)  # jittered: no herd
    assert job.cursor.startswith("details:#")  # the next pull request number to capture
    assert 0 < job.done < 150
    rig.sandbox.options.tokens[TOKEN] = 1_000_000
    rig.retry_now(job_id)
    assert rig.run(job_id).outcome == "completed"
    assert_complete(world, database_url)
    assert events(rig.store, job_id).count("Started") == 2


@pytest.mark.slow
def test_a_killed_worker_is_swept_and_the_retry_resumes_from_its_checkpoint(store, database_url):
    """A real `bin/run-job` process, killed mid-job; the sweeper fails it as stale."""
    import os
    import signal
    import subprocess
    import sys

    from devtools.sandbox import Options, Sandbox
    from tests.capture.rig import LOCAL
    from tests.conftest import ROOT
    from tests.jobstore.test_views import wait_for

    world = World(seed=11)
    world.add_repository("acme/widgets", 150, 120)
    sandbox = Sandbox(world, Options(tokens={TOKEN: 100_000}, latency=0.03))
    served = sandbox.serve()
    spec = JobSpec.create("historical-sync", "acme/widgets", days=200)
    job_id = store.enqueue(spec, route=LOCAL).job_id
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": served.url,
        "GITHUB_GRAPHQL_URL": f"{served.url}/graphql",
        "CAPTURE_BATCH_SIZE": "10",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bin" / "run-job"),
            "--job-id",
            str(job_id),
            "--worker-id",
            "doomed",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (store.get(job_id).cursor or "").startswith("details:"), timeout=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        worker.kill() if worker.poll() is None else None
    killed_at = store.get(job_id)
    assert killed_at.status.value == "running"
    assert killed_at.cursor.startswith("details:#")
    assert 0 < killed_at.done < 150
    later = killed_at.last_event_at + timedelta(seconds=store.settings.lease("local") + 1)
    assert store.sweep_stale(later) == [job_id]
    store.route(job_id, LOCAL, later)
    retry = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run-job"), "--job-id", str(job_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    served.stop()
    assert retry.returncode == 0, retry.stderr
    assert store.get(job_id).status.value == "completed"
    assert_complete(world, database_url)
    started = [e for e in store.history(job_id) if type(e).__name__ == "Started"]
    assert [e.attempt for e in started] == [1, 2]


def test_not_found_fails_for_good_and_server_errors_are_retried(rigs, world):
    rig = rigs(world)
    gone = rig.enqueue("historical-sync", repository="acme/missing", days=10)
    result = rig.run(gone)
    assert result.outcome == "failed"
    assert rig.store.get(gone).status.value == "failed"  # final: not retried
    assert rig.store.history(gone)[-1].retryable is False
    rig.sandbox.faults.add(Fault("graphql", "503", count=100), Fault("rest", "503", count=100))
    flaky = rig.enqueue("pr-reviews", pr_numbers=[2])
    assert rig.run(flaky).outcome == "failed"
    assert rig.store.get(flaky).status.value == "retry_scheduled"


def test_a_job_whose_items_all_failed_ends_failed(rigs, world):
    rig = rigs(world)
    job_id = rig.enqueue("pr-reviews", pr_numbers=[9001, 9002])
    result = rig.run(job_id)
    assert result.outcome == "failed"
    assert rig.store.history(job_id)[-1].error_type == "items_failed"
    assert rig.store.get(job_id).status.value == "failed"


def test_a_missing_token_fails_at_start_with_a_clear_message(rigs, world):
    from capture.settings import Secret

    rig = rigs(world)
    rig.settings = rig.settings.__class__(**{**rig.settings.__dict__, "token": Secret("")})
    job_id = rig.enqueue("pr-reviews", pr_numbers=[1])
    result = rig.run(job_id)
    assert result.outcome == "failed"
    assert "GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set" in result.detail


def test_large_windows_split_into_child_jobs_and_the_parent_waits_for_them(rigs, world):
    rig = rigs(world, max_items=40)
    parent = rig.enqueue("historical-sync", days=200, trigger="backfill")
    assert rig.run(parent).outcome == "waiting"
    children = rig.store.heads.children(parent)
    assert len(children) == 4  # 150 pull requests, 40 per child
    assert rig.run(parent).outcome == "lost"  # it is waiting, not routed
    rig.retry_now(parent)
    assert rig.run(parent).outcome == "waiting"  # children not done yet
    for child in children:
        assert rig.run(child).outcome == "completed"
    rig.retry_now(parent)
    assert rig.run(parent).outcome == "completed"
    assert rig.store.get(parent).items == 150


def test_a_parent_looks_at_its_children_less_often_the_longer_they_take(rigs, world):
    """Each look is a run of its own (on Actions a workflow run): a minute after the
    split, then twice as long each time, at most half an hour (the last child wakes it)."""
    rig = rigs(world, max_items=40)
    parent = rig.enqueue("historical-sync", days=200, trigger="backfill")
    waits = []
    for _ in range(8):
        assert rig.run(parent).outcome == "waiting"
        waits.append((rig.store.get(parent).not_before - rig.clock()).total_seconds())
        rig.retry_now(parent)
    assert waits == [60, 120, 240, 480, 960, 1800, 1800, 1800]
    *first, last = rig.store.heads.children(parent)
    for child in first:
        assert rig.run(child).outcome == "completed"
    assert rig.run(parent).outcome == "waiting"
    assert rig.run(last).outcome == "completed"  # the last one wakes it: no half hour
    assert rig.store.get(parent).status is Status.ROUTED
    assert rig.run(parent).outcome == "completed"


def test_a_parent_whose_last_child_ended_during_its_look_is_woken_at_once(rigs, world):
    """The last child's wake finds the parent running its look (which saw the child
    unfinished): the parent's wait, written after, sees them all finished and wakes it."""
    rig = rigs(world, max_items=40)
    parent = rig.enqueue("historical-sync", days=200, trigger="backfill")
    assert rig.run(parent).outcome == "waiting"
    children = list(rig.store.heads.children(parent))
    for child in children[:-1]:
        assert rig.run(child).outcome == "completed"
    rig.retry_now(parent)
    looking = rig.store.claim(parent, "w", rig.clock())
    assert looking.won
    assert rig.run(children[-1]).outcome == "completed"
    assert rig.store.get(parent).status is Status.RUNNING  # the wake could not route it
    job = rig.store.wait_for_children(
        parent,
        rig.clock() + timedelta(minutes=30),
        attempt=looking.attempt,
        now=rig.clock(),
        held=looking.job,
    )
    assert job.id == looking.job.id
    woken = rig.store.get(parent)
    assert woken.status is Status.ROUTED
    assert "its child jobs finished" in woken.reason
    assert rig.run(parent).outcome == "completed"


def whole_history(rig, repository: str, days: int):
    """A bootstrap's backfill: the history since 2008, up to `days` ago."""
    until = rig.clock() - timedelta(days=days)
    return rig.enqueue(
        "historical-sync", repository, since=GITHUB_EPOCH, until=until, trigger="backfill"
    )


def test_a_whole_history_is_split_by_number_ranges_and_issue_numbers_are_skipped(
    rigs, world, database_url
):
    """A bootstrap's backfill (since 2008) is not one long index pass: its first page
    says how large the history is, and children take the numbers 1..newest in ranges,
    each on its own checkpoint; numbers that issues took are not failures."""
    repo = world.add_repository("acme/big", 70, 15 * 365, issues=0.5)
    newest = max(repo.pulls)
    assert newest > 100  # gaps: issues took about half the numbers
    rig = rigs(world, max_items=30)
    parent = whole_history(rig, "acme/big", days=30)
    assert rig.run(parent).outcome == "waiting"
    split = rig.store.get(parent)
    assert (split.cursor, split.total) == ("children", newest)
    children = [rig.store.get(c) for c in rig.store.heads.children(parent)]
    assert len(children) == -(-newest // 30)
    numbers = sorted(n for child in children for n in child.pr_numbers)
    assert numbers == list(range(1, newest + 1))  # every number, once
    assert all(child.params["range"] for child in children)
    queries = len(rig.sandbox.ledger.entries)
    for child in children:
        result = rig.run(child.id)
        assert result.outcome == "completed", result
        ended = rig.store.history(child.id)[-1]
        assert type(ended).__name__ == "Completed"
        assert ended.summary["failed_items"] == 0
    rig.retry_now(parent)
    assert rig.run(parent).outcome == "completed"
    assert rig.store.get(parent).items == 70  # pull requests, not numbers
    with psycopg.connect(database_url) as conn:
        stored_numbers = [
            n
            for (n,) in conn.execute(
                "SELECT p.number FROM pull_requests p JOIN repositories r "
                "ON r.id = p.repository_id WHERE r.full_name = 'acme/big' ORDER BY 1"
            )
        ]
    assert stored_numbers == sorted(repo.pulls)  # the whole history, and nothing else
    assert len(rig.sandbox.ledger.entries) > queries


def test_a_small_whole_history_is_indexed_from_the_page_it_already_read(rigs, world):
    """Below CAPTURE_MAX_ITEMS the first page that sized the history is the index's
    first page: no second read of it."""
    world.add_repository("acme/few", 12, 15 * 365, issues=0.3)
    rig = rigs(world, max_items=30)
    parent = whole_history(rig, "acme/few", days=1)
    before = len(rig.sandbox.ledger.entries)
    assert rig.run(parent).outcome == "completed"
    sweeps = [
        e
        for e in rig.sandbox.ledger.entries[before:]
        if e.kind == "graphql" and e.extra.get("operation") == "RepositorySweep"
    ]
    assert len(sweeps) == 1
    assert rig.store.get(parent).items == 12


def test_repository_sync_is_incremental_from_its_watermark(rigs, world, database_url, clock):
    rig = rigs(world)
    first = rig.enqueue("repository-sync", trigger="scheduled")
    assert rig.run(first).outcome == "completed"
    assert rig.store.get(first).items == 150
    clock.advance(hours=2)
    world.add_pull_request("acme/widgets", clock())
    old = next(
        p
        for p in world.repository("acme/widgets").pulls.values()
        if p.author and p.author.kind == "User"
    )
    world.rename_user(old.author.database_id, "renamed-user")
    world.edit_pull_request("acme/widgets", old.number, clock(), "An old pull request, edited")
    second = rig.enqueue("repository-sync", trigger="scheduled", dedupe_key="second run")
    assert rig.run(second).outcome == "completed"
    assert rig.store.get(second).items == 2  # the new one and the edited old one
    with psycopg.connect(database_url) as conn:
        title = conn.execute(
            "SELECT title FROM pull_requests WHERE number = %s", (old.number,)
        ).fetchone()[0]
        mark = conn.execute("SELECT updated_at FROM sync_watermarks").fetchone()[0]
        logins = conn.execute(
            "SELECT login FROM contributors WHERE id = %s", (old.author.database_id,)
        ).fetchall()
    assert title == "An old pull request, edited"
    assert mark == clock.now.replace(microsecond=0)
    assert logins == [("renamed-user",)]  # one row per GitHub id, login updated


def test_repository_sync_over_a_window(rigs, world, database_url):
    rig = rigs(world)
    job_id = rig.enqueue("repository-sync", since=NOW - timedelta(days=30), until=NOW)
    assert rig.run(job_id).outcome == "completed"
    repo = world.repository("acme/widgets")
    since = NOW - timedelta(days=30)
    want = {p.number for p in repo.pulls.values() if p.created_at >= since or p.updated_at >= since}
    with psycopg.connect(database_url) as conn:
        got = {r[0] for r in conn.execute("SELECT number FROM pull_requests")}
    assert got == want


def test_pr_details_for_the_window_fills_only_what_is_missing(rigs, world, database_url):
    rig = rigs(world)
    rig.run(rig.enqueue("repository-sync", trigger="scheduled"))
    job_id = rig.enqueue("pr-details", days=60)
    assert rig.run(job_id).outcome == "completed"
    with psycopg.connect(database_url) as conn:
        filled = conn.execute("SELECT count(*) FROM pull_requests WHERE details_at IS NOT NULL")
        assert filled.fetchone()[0] == rig.store.get(job_id).items > 0
    again = rig.enqueue("pr-details", days=60, dedupe_key="second run")
    assert rig.run(again).outcome == "completed"
    assert rig.store.get(again).items == 0  # nothing missing any more


def test_realtime_jobs_may_use_the_reserve_and_bulk_jobs_may_not(rigs, world):
    rig = rigs(world, reserve=1_000_000 - 5)
    bulk = rig.enqueue("pr-reviews", pr_numbers=[1], trigger="scheduled")
    rig.sandbox.budgets.charge(TOKEN, "graphql", 10)  # leaves less than the reserve
    gh = rig.gh(realtime=False)
    gh.session.budget.remaining["graphql"] = 1_000_000 - 10
    assert rig.run(bulk).outcome == "rescheduled"
    urgent = rig.enqueue("pr-reviews", pr_numbers=[2], trigger="manual")
    assert rig.run(urgent).outcome == "completed"


def test_the_token_never_appears_in_events_views_logs_or_errors(rigs, world, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:502:2", "graphql:partial:pr=5")
    jobs = [
        rig.enqueue("historical-sync", days=200),
        rig.enqueue("historical-sync", repository="acme/missing", days=3),
    ]
    results = [rig.run(j) for j in jobs]
    from jobstore import views

    v = views.open_views(database_url)
    views.catch_up(rig.store, v)
    v.close()
    with psycopg.connect(database_url) as conn:
        dump = [
            str(row)
            for table in ("jobs_events", "capture_jobs", "job_audit")
            for row in conn.execute(f"SELECT * FROM {table}")
        ]
    haystack = "\n".join(dump + [caplog.text] + [repr(r) for r in results] + [repr(rig.settings)])
    assert TOKEN not in haystack
    assert TOKEN[4:20] not in haystack


@pytest.mark.parametrize("ended_by", ["cancel", "sweeper"])
def test_a_worker_whose_attempt_was_ended_elsewhere_stops_and_writes_nothing(rigs, world, ended_by):
    from capture.attempt import run_claimed

    rig = rigs(world, batch_size=10)
    job_id = rig.enqueue("pr-reviews", pr_numbers=list(range(1, 31)))
    claimed = rig.store.claim(job_id, "slow-worker", rig.clock())
    if ended_by == "cancel":
        rig.store.cancel(job_id, "operator", rig.clock())
    else:
        rig.store.fail(job_id, "stale", "no event for 400s", attempt=1, now=rig.clock())
    before = len(rig.store.history(job_id))
    result = run_claimed(
        rig.store,
        claimed.job,
        storage=rig.storage,
        settings=rig.settings,
        github=rig.github,
        now=rig.clock,
    )
    assert result.outcome == "lost"
    assert "attempt ended elsewhere" in result.detail
    assert len(rig.store.history(job_id)) == before


def test_concurrent_writers_of_the_same_contributors_do_not_deadlock(database_url):
    """Two matrix legs of one repository write the same contributors at once, in opposite
    orders and with changed logins (so rows really update and lock)."""
    import random
    import threading

    from capture.records import Rows
    from capture.storage import Storage
    from jobstore.db import Database

    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        storage, rng = Storage(Database(database_url, f"writer-{seed}")), random.Random(seed)
        try:
            for round_ in range(25):
                ids = list(range(1, 60))
                rng.shuffle(ids)
                rows = Rows()
                for i in ids:
                    rows.contributors[i] = {
                        "id": i,
                        "login": f"u{i}-{seed}-{round_}",
                        "kind": "User",
                    }
                storage.write(rows)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            storage.db.close()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize(
    ("fault", "error_type", "retryable", "words"),
    [
        ("graphql:422:100", "request_refused", False, "GitHub refused POST /graphql: HTTP 422"),
        ("graphql:400:100", "request_refused", False, "HTTP 400"),
        ("graphql:409:100", "request_refused", False, "HTTP 409"),
        ("graphql:401:100", "credentials_rejected", True, "refused the token (HTTP 401)"),
        ("graphql:403:100", "access_denied", False, "refused access to /graphql (HTTP 403)"),
    ],
)
def test_unexpected_answers_are_classified_never_parsed_as_data(
    rigs, world, fault, error_type, retryable, words
):
    rig = rigs(world)
    rig.sandbox.faults.add(fault)
    job_id = rig.enqueue("pr-reviews", pr_numbers=[1])
    result = rig.run(job_id)
    assert result.outcome == "failed"
    failed = rig.store.history(job_id)[-2 if retryable else -1]
    assert (failed.error_type, failed.retryable) == (error_type, retryable)
    assert words in failed.message
    expected = "retry_scheduled" if retryable else "failed"
    assert rig.store.get(job_id).status.value == expected


def test_a_429_without_rate_limit_headers_is_backed_off_not_parsed(rigs, world):
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:429:1")
    job_id = rig.enqueue("pr-reviews", pr_numbers=[1, 2])
    assert rig.run(job_id).outcome == "completed"


def test_a_long_secondary_wait_writes_heartbeats_so_the_job_is_not_swept(rigs, world):
    rig = rigs(world)
    rig.sandbox.faults.add("graphql:secondary:400s")  # longer than the 300 s local lease
    job_id = rig.enqueue("historical-sync", days=200)
    assert rig.run(job_id).outcome == "completed"
    assert sum(rig.slept) >= 400
    events = rig.store.history(job_id)
    beats = [e for e in events if type(e).__name__ == "Progressed" and "waiting" in e.note]
    assert len(beats) >= 6
    assert "secondary rate limit on graphql" in beats[0].note
    times = [e.timestamp for e in events]
    lease = rig.store.settings.lease("local")
    assert max((b - a).total_seconds() for a, b in itertools.pairwise(times)) < lease


def test_a_job_that_listed_items_and_captured_none_does_not_complete(rigs, world, monkeypatch):
    """ "Completed, 0 of 500" hid data gaps in the system this replaces."""
    from capture.handlers import HANDLERS, Handler, Outcome

    def lists_but_captures_nothing(ctx):
        ctx.checkpoint(0, 500, "listed")
        return Outcome(items=0)

    monkeypatch.setitem(
        HANDLERS, "pr-details", Handler("pr-details", lists_but_captures_nothing, ("local",))
    )
    rig = rigs(world)
    job_id = rig.enqueue("pr-details", pr_numbers=[1])
    result = rig.run(job_id)
    assert result.outcome == "failed"
    last = rig.store.history(job_id)[-1]
    assert (last.error_type, last.retryable) == ("items_missing", False)
    assert "none of the 500 items" in last.message
