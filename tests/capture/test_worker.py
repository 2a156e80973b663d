"""Local lane workers: LISTEN/NOTIFY wake-ups, the polling fallback, and `bin/run-job --lane`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner

from capture.attempt import Result
from capture.cli.run_job import run_job_command
from capture.worker import work
from jobstore import Wakeup
from jobstore.routing import Route
from jobstore.spec import JobSpec
from tests.conftest import ROOT
from tests.jobstore.test_views import wait_for


def local_job(store, repo: str = "acme/widgets", prs=(1,)):
    spec = JobSpec.create("pr-details", repo, pr_numbers=list(prs))
    return store.enqueue(spec, route=Route("local", "explicit", "test")).job_id


def completing(store):
    def run(job):
        store.complete(job.id, 1, attempt=job.attempt)
        return Result(job.id, "completed", items=1)

    return run


def now():
    return datetime.now(UTC)


def watching(store, wakeup, max_jobs: int, poll: float):
    """A worker thread watching the local lane; returns (thread, stop, results)."""
    stop, results = threading.Event(), []
    thread = threading.Thread(
        target=lambda: results.extend(
            work(
                store,
                "local",
                "w1",
                completing(store),
                now=now,
                wakeup=wakeup,
                max_jobs=max_jobs,
                watch=True,
                poll=poll,
                stop=stop,
            )
        )
    )
    thread.start()
    return thread, stop, results


def test_a_waiting_worker_is_woken_by_notify(store, database_url):
    wakeup = Wakeup(database_url, "local")
    thread, _, results = watching(store, wakeup, max_jobs=1, poll=30)
    time.sleep(0.2)  # the worker is now blocked in LISTEN with a 30 s poll
    job_id = local_job(store)
    thread.join(timeout=10)  # far less than the 30 s poll: only the NOTIFY can explain it
    assert not thread.is_alive()
    assert [r.job_id for r in results] == [job_id]
    wakeup.close()


def test_a_dropped_listen_connection_falls_back_to_polling(store, database_url):
    wakeup = Wakeup(database_url, "local")
    wakeup.listen()
    pid = wakeup.conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    thread, stop, results = watching(store, wakeup, max_jobs=2, poll=0.2)
    first = local_job(store, "acme/one")
    second = local_job(store, "acme/two")
    thread.join(timeout=20)
    stop.set()
    assert sorted(r.job_id for r in results) == sorted([first, second])
    wakeup.close()


def test_without_watch_the_worker_stops_when_the_queue_is_empty(store):
    ids = [local_job(store, f"acme/r{n}") for n in range(3)]
    results = work(store, "local", "w1", completing(store), now=now, max_jobs=2)
    assert len(results) == 2
    rest = work(store, "local", "w1", completing(store), now=now)
    assert sorted(r.job_id for r in results + rest) == sorted(ids)
    assert work(store, "local", "w1", completing(store), now=now) == []


def test_run_job_lane_local_captures_through_the_sandbox(store, database_url, served, tmp_path):
    ids = [local_job(store, "acme/widgets", [n]) for n in (1, 2, 3)]
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    env = {
        **served.env,
        "DATABASE_URL": database_url,
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
    }
    result = CliRunner().invoke(run_job_command, ["--lane", "local", "--max-jobs", "5"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 jobs, 0 failed" in result.output
    assert all(store.get(j).status.value == "completed" for j in ids)
    text = summary.read_text()
    assert all(str(j) in text for j in ids)
    assert "| job | lane | attempt | outcome | items | points | duration (s) |" in text
    assert "jobs=3\nfailed=0" in output.read_text()


def test_a_failed_job_is_annotated_in_actions(store, database_url, served, tmp_path):
    job_id = local_job(store, "acme/missing-repo")
    env = {
        **served.env,
        "DATABASE_URL": database_url,
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "s"),
        "GITHUB_OUTPUT": str(tmp_path / "o"),
    }
    result = CliRunner().invoke(run_job_command, ["--job-id", str(job_id)], env=env)
    assert result.exit_code == 1
    assert f"::error title=capture pr-details::job {job_id} failed" in result.output
    assert "outcome=failed" in (tmp_path / "o").read_text()
    assert served.env["GITHUB_TOKEN"] not in result.output + (tmp_path / "s").read_text()


def listening(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            ).fetchone()[0]
            > 0
        )


def terminate_backends(database_url: str) -> int:
    """What a failover, a pooler restart or an idle reaper does to a worker's connections."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


@pytest.mark.slow
def test_an_idle_watching_worker_rides_out_terminated_connections(store, database_url, served):
    env = {**os.environ, **served.env, "DATABASE_URL": database_url}
    worker = subprocess.Popen(
        [
            sys.executable,
            ROOT / "bin" / "run-job",
            *("--lane", "local", "--watch", "--poll", "0.2"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = local_job(store, prs=(1,))
        wait_for(lambda: store.get(first).status.value == "completed", timeout=60)
        for round_ in range(3):  # idle, then every connection it holds is cut
            assert terminate_backends(database_url) > 0
            job_id = local_job(store, prs=(2 + round_,))
            wait_for(lambda j=job_id: store.get(j).is_final, timeout=60)
            assert store.get(job_id).status.value == "completed", store.get(job_id).error
        assert worker.poll() is None  # still working
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert err.count("waiting, and trying again") <= 3  # said once per outage


@pytest.mark.slow
def test_a_watching_worker_acknowledges_the_first_signal_and_stops(database_url, served):
    env = {**os.environ, **served.env, "DATABASE_URL": database_url}
    worker = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "run-job", *("--lane", "local", "--watch")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: listening(database_url), timeout=30)  # idle, waiting on LISTEN
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "SIGINT: finishing the job in hand, then stopping" in err
    assert "0 jobs, 0 failed" in out


def test_a_worker_runs_jobs_at_once_up_to_its_concurrency(store):
    jobs = [local_job(store, prs=(n,)) for n in range(1, 8)]
    together = threading.Barrier(3, timeout=20)  # passes only with three jobs running at once
    running, most, begun = set(), [0], [0]
    lock = threading.Lock()

    def run(job):
        with lock:
            running.add(job.id)
            most[0] = max(most[0], len(running))
            begun[0] += 1
            first = begun[0] <= 3
        if first:  # the first three meet; the rest run as threads come free
            together.wait()
        with lock:
            running.discard(job.id)
        return completing(store)(job)

    results = work(store, "local", "w1", run, now=now, concurrency=3, max_jobs=6)
    assert not together.broken  # three ran together
    assert most[0] == 3  # and never more than three
    assert len(results) == 6  # --max-jobs counts what it claimed
    assert {r.outcome for r in results} == {"completed"}
    left = [j for j in jobs if store.get(j).status.value != "completed"]
    assert len(left) == 1 and store.get(left[0]).status.value == "routed"  # noqa: PT018


def test_interrupted_the_jobs_running_on_other_threads_are_released(store):
    from capture.attempt import Interrupted

    jobs = [local_job(store, prs=(n,)) for n in (1, 2)]
    started, finish = threading.Barrier(3, timeout=20), threading.Event()

    def run(job):
        started.wait()
        finish.wait(20)
        try:
            return completing(store)(job)
        except Exception as exc:  # the release ended the attempt: this write is refused
            return Result(job.id, "lost", type(exc).__name__)

    asked = [0]

    def ready():
        asked[0] += 1
        if asked[0] == 3:  # both claimed and running: a second signal lands
            started.wait()
            raise Interrupted(signal.SIGTERM)
        return None

    with pytest.raises(Interrupted):
        work(store, "local", "w1", run, now=now, concurrency=3, ready=ready)
    for job_id in jobs:
        failed = store.history(job_id)[-2]
        assert (type(failed).__name__, failed.error_type, failed.retryable) == (
            "Failed",
            "interrupted",
            True,
        )
        assert store.get(job_id).status.value == "retry_scheduled"
    finish.set()  # the threads carry on, and their ending writes are refused
