"""End to end through the sandbox: `bin/enqueue` -> router -> lane -> runner -> store, on
both lanes, with each lane down, and with a lane that accepts a job and never runs it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from capture.cli.enqueue import enqueue
from capture.cli.jobs import jobs
from devtools.playground import Playground
from tests.conftest import ROOT, server_home


@pytest.fixture
def playground(store, database_url, world, monkeypatch):
    ground = Playground(
        world,
        database_url,
        extra_env={"CAPTURE_MAX_ITEMS": "100", "JOBSTORE_START_DEADLINE_INNGEST": "30"},
        variables={"CAPTURE_MAX_ITEMS": "100"},
        sweep_every=None,  # the tests sweep when they choose
    )
    ground.start(lambda env: [monkeypatch.setenv(k, v) for k, v in env.items()])
    yield ground
    ground.close()


def run_enqueue(*args: str) -> dict:
    result = CliRunner().invoke(enqueue, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def run_sweep(at: datetime | None = None) -> dict:
    args = ["sweep", "--json"] + (["--now", at.isoformat()] if at else [])
    result = CliRunner().invoke(jobs, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def lanes_started(store, job_id) -> list[str]:
    return [e.lane for e in store.history(job_id) if type(e).__name__ == "Started"]


def test_recent_work_runs_on_inngest_and_a_backfill_on_actions(store, playground):
    recent = run_enqueue("pr-reviews", "--repo", "acme/widgets", "--prs", "1,2")
    backfill = run_enqueue(
        "historical-sync",
        "--repo",
        "acme/widgets",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-06-01T00:00:00Z",
        "--trigger",
        "backfill",
    )
    assert (recent["lane"], backfill["lane"]) == ("inngest", "github_actions")
    playground.drain()
    run_sweep()  # the parent woke when its children ended: dispatch it again to finish
    playground.drain()
    assert store.get(recent["job_id"]).status.value == "completed"
    assert lanes_started(store, recent["job_id"]) == ["inngest"]
    parent = store.get(backfill["job_id"])
    assert parent.status.value == "completed", parent.error
    children = store.heads.children(parent.id)
    assert len(children) > 1
    assert all(lanes_started(store, c) == ["github_actions"] for c in children)
    assert len(playground.executor.runs) == 1


def test_inngest_down_sends_recent_work_to_actions_with_high_priority(store, playground):
    playground.sandbox.faults.add("inngest:down")
    doc = run_enqueue("pr-details", "--repo", "acme/widgets", "--prs", "3")
    assert (doc["lane"], doc["rule"], doc["priority"]) == ("github_actions", "fallback", "high")
    playground.drain()
    assert store.get(doc["job_id"]).status.value == "completed"
    assert lanes_started(store, doc["job_id"]) == ["github_actions"]


def test_actions_down_keeps_a_backfill_until_the_sweeper_can_dispatch_it(store, playground):
    playground.sandbox.faults.add("dispatch:down")
    doc = run_enqueue(
        "pr-reviews",
        "--repo",
        "acme/widgets",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-02-01T00:00:00Z",
        "--trigger",
        "scheduled",
    )
    assert (doc["lane"], doc["status"], doc["dispatched"]) == ("github_actions", "routed", False)
    assert run_sweep()["not_dispatched"] == {doc["job_id"]: pytest.approx(doc["dispatch"])}
    playground.sandbox.faults.clear()
    assert run_sweep()["dispatched"] == [doc["job_id"]]
    playground.drain()
    assert store.get(doc["job_id"]).status.value == "completed"


def test_both_lanes_down_run_the_job_on_a_local_worker(store, playground, database_url):
    playground.sandbox.faults.add("inngest:down", "dispatch:down")
    doc = run_enqueue("pr-details", "--repo", "acme/widgets", "--prs", "4")
    assert doc["lane"] == "local"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run-job"), "--lane", "local", "--max-jobs", "1"],
        env={**playground.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert store.get(doc["job_id"]).status.value == "completed"


def test_a_job_inngest_accepted_and_never_ran_is_healed(store, playground):
    playground.sandbox.inngest.handlers.callbacks.clear()  # accepted, never delivered
    doc = run_enqueue("pr-reviews", "--repo", "acme/widgets", "--prs", "5")
    assert doc["status"] == "dispatched"
    later = datetime.now(UTC) + timedelta(seconds=31)
    first = run_sweep(later)
    assert first["undelivered"] == [doc["job_id"]]
    assert first["dispatched"] == [doc["job_id"]]  # again, with a new event id
    ids = [e["id"] for e in playground.sandbox.inngest.events]
    assert len(ids) == 2 and len(set(ids)) == 2  # noqa: PT018 - both delivered, both distinct
    second = run_sweep(later + timedelta(seconds=31))
    assert second["fallbacks"] == {doc["job_id"]: "github_actions"}
    playground.drain()
    job = store.get(doc["job_id"])
    assert (job.status.value, job.lane, job.priority) == ("completed", "github_actions", "high")


@pytest.mark.slow
def test_make_demo_runs_everything_to_completion(server_url):
    """The demo, as `make demo` runs it (on the test server's embedded PostgreSQL)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(ROOT),
        "JOBSTORE_HOME": str(server_home()),  # this worker's own server
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "routed to inngest" in out
    assert "routed to github_actions (historical" in out
    assert "matrix legs" in out
    assert "against all-Inngest" in out
    assert "Completed" in out  # the audit trail ends with the job's completion
    assert "13 of 13 jobs completed" in out
    assert "routed to github_actions (fallback: inngest down" in out
    titles = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("   run ")]
    assert titles, out
    assert len(titles) == len(set(titles)), titles  # no attempt was dispatched twice
    assert "sandbox-token" not in out + done.stderr  # the token never reaches the output
    # The commands it ends with work, and show the demo's jobs.
    explore = out.split("== explore what the demo did", 1)[1].splitlines()[1:]
    exports = dict(
        shlex.split(line)[1].split("=", 1) for line in explore if line.startswith("export ")
    )
    env = {**env, **exports}
    commands = [shlex.split(line) for line in explore if line.startswith("bin/")]
    assert [c[:2] for c in commands] == [
        ["bin/jobs", "list"],
        ["bin/jobs", "show"],
        ["bin/jobs", "stats"],
        ["bin/db", "psql"],
        ["bin/db", "stop"],  # the embedded server stays up: the last line says how to stop it
    ]
    for command in commands[:-1]:  # not the stop: the server is this test worker's
        shown = subprocess.run(
            [sys.executable, str(ROOT / command[0]), *command[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip(), command
        assert "no jobs" not in shown.stdout
    listed = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "jobs"), "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert len(json.loads(listed.stdout)) >= 13
