"""The Actions workflows: linted by actionlint and zizmor, and their `run:` steps executed
against the sandbox with what a runner provides (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY,
inputs and secrets through env), proving the steps call the scripts correctly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from capture.handlers import capable
from devtools.playground import machine_env
from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox
from devtools.sandbox.actions_runner import ActionsRunner, declared_inputs, load_workflow
from jobstore.db import Database
from jobstore.dispatcher import Dispatcher, open_lanes
from jobstore.routing import Route
from jobstore.secret import Secret
from jobstore.settings import LaneSettings
from jobstore.spec import JobSpec
from jobstore.sweeper import sweep
from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (the dev extra installs it)"
    return found


def test_actionlint_finds_nothing():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    done = subprocess.run([tool("actionlint"), *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_finds_nothing(persona):
    done = subprocess.run(
        [tool("zizmor"), "--offline", f"--persona={persona}", str(ROOT / ".github")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "file", ["capture-job.yml", "historical-sync.yml", "sweep.yml", "plan.yml"]
)
def test_workflows_are_least_privilege_bounded_and_grouped(file):
    workflow = load_workflow(WORKFLOWS / file)
    assert workflow["permissions"] == {}
    assert "group" in workflow["concurrency"]
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] < 360
        assert set(job["permissions"]) <= {"contents", "actions"}
        for step in job["steps"]:
            run = step.get("run", "")
            assert "${{" not in run, f"{file}: an expression inside a script (use env:)"


@pytest.mark.parametrize("file", ["capture-job.yml", "historical-sync.yml"])
def test_dispatched_workflows_declare_exactly_the_inputs_the_lane_sends(file):
    inputs = declared_inputs(load_workflow(WORKFLOWS / file))
    assert set(inputs) == {"job_id", "attempt"}
    assert "inputs.job_id" in load_workflow(WORKFLOWS / file)["run-name"]


@pytest.fixture
def rig(store, database_url, world):
    """The sandbox serving GitHub and Actions over HTTP, with a runner executing the real
    workflow files, and a dispatcher configured as a production sweeper would be."""
    sandbox = Sandbox(world, Options())
    sandbox.load_workflows(WORKFLOWS, "acme/ops")
    served = sandbox.serve()
    runner = ActionsRunner(
        WORKFLOWS,
        ROOT,
        secrets={
            "DATABASE_URL": database_url,
            "CAPTURE_GITHUB_TOKEN": DEFAULT_TOKEN,
            "INNGEST_EVENT_KEY": DEFAULT_EVENT_KEY,
            "GITHUB_TOKEN": DEFAULT_TOKEN,
        },
        base_env={**machine_env(), "PATH": f"{BIN}:{machine_env().get('PATH', '')}"},
        server_url=served.url,
        variables={"CAPTURE_MAX_ITEMS": "100"},
        on_finish=sandbox.actions.finish,
    )
    sandbox.actions.handlers.callbacks.append(runner)
    lanes = LaneSettings(
        inngest_event_key=Secret(DEFAULT_EVENT_KEY),
        inngest_event_api=served.url,
        github_token=Secret(DEFAULT_TOKEN),
        github_api_url=served.url,
        actions_repository="acme/ops",
    )
    store.settings = replace(store.settings, lanes=lanes)
    client = httpx.Client(timeout=30)
    dispatcher = Dispatcher(store, *open_lanes(store.settings, client), capable)
    sandbox.runner, sandbox.dispatcher = runner, dispatcher
    yield sandbox
    sandbox.drain()
    client.close()
    served.stop()


def actions_job(store, job_type="pr-reviews", **window):
    spec = JobSpec.create(job_type, "acme/widgets", trigger="backfill", **window)
    return store.enqueue(spec, route=Route("github_actions", "historical", "t")).job_id


def step_failures(runner) -> str:
    return "\n".join(
        f"{s.job}/{s.name}: {s.output}" for log in runner.logs for s in log.steps if s.returncode
    )


def test_capture_job_workflow_runs_the_job_it_was_dispatched_for(store, rig):
    job_id = actions_job(store, pr_numbers=[1, 2, 3])
    assert rig.dispatcher.send(job_id, store_now()).ok
    rig.drain()
    (log,) = rig.runner.logs
    assert log.conclusion == "success", step_failures(rig.runner)
    job = store.get(job_id)
    assert (job.status.value, job.items) == ("completed", 3)
    started = next(e for e in store.history(job_id) if type(e).__name__ == "Started")
    assert started.lane == "github_actions"
    run_step = next(s for s in log.steps if s.name == "Run the job")
    assert f"| {job_id} | github_actions | 1 | completed | 3 |" in run_step.summary
    assert [s.name for s in log.steps if s.returncode is None] == [
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b",
        "Install",
    ]
    run = rig.actions.runs[int(job.ref.split()[0])]
    assert (run.display_title, run.conclusion) == (f"capture {job_id} #1", "success")


def test_historical_sync_fans_out_and_finishes_on_the_next_dispatch(store, rig):
    since, until = "2025-12-01T00:00:00Z", "2026-11-01T00:00:00Z"
    parent = actions_job(store, "historical-sync", since=since, until=until)
    assert rig.dispatcher.send(parent, store_now()).ok
    rig.drain()
    first = rig.runner.logs[0]
    assert first.conclusion == "success", step_failures(rig.runner)
    children = store.heads.children(parent)
    assert len(children) >= 2
    assert first.legs == len(children)  # one matrix leg per child
    assert set(children.values()) == {"completed"}
    # The last child woke the parent; the sweeper dispatches the workflow again to finish it.
    assert store.get(parent).status.value == "routed"
    report = sweep(rig.dispatcher, store_now())
    assert [s.job_id for s in report.sent if s.ok] == [parent]
    rig.drain()
    second = rig.runner.logs[1]
    assert second.conclusion == "success", step_failures(rig.runner)
    assert second.legs == 0  # no children left to plan: the matrix job is skipped
    job = store.get(parent)
    assert job.status.value == "completed"
    assert job.items == sum(store.get(c).items for c in children) > 0


def test_sweep_workflow_dispatches_jobs_left_routed(store, rig):
    job_id = actions_job(store, pr_numbers=[4])
    log = rig.runner.run("sweep.yml", {}, 1, event="schedule")
    assert log.conclusion == "success", step_failures(rig.runner)
    rig.drain()
    assert store.get(job_id).status.value == "completed"


def test_plan_workflow_bootstraps_tracked_repositories_on_a_schedule(store, rig, database_url):
    from capture.freshness.registry import Entry, Registry

    registry = Registry(Database(database_url, "registry"))
    registry.track([Entry("acme/widgets", "warm")], store_now())
    log = rig.runner.run("plan.yml", {}, 1, event="schedule")
    assert log.conclusion == "success", step_failures(rig.runner)
    (tracked,) = registry.tracked()
    registry.db.close()
    assert tracked["bootstrap"] == "started"
    rig.drain()  # the backfill went to Actions; the recent part to Inngest or its fallback
    backfill = store.get(tracked["bootstrap_jobs"][1])
    assert (backfill.job_type, backfill.lane) == ("historical-sync", "github_actions")


def test_inputs_reach_scripts_through_env_only(store, rig, tmp_path):
    marker = tmp_path / "pwned"
    log = rig.runner.run(
        "capture-job.yml", {"job_id": f'"; touch {marker}; echo "', "attempt": "1"}, 2
    )
    assert log.conclusion == "failure"
    assert not marker.exists()
    (run_step,) = [s for s in log.steps if s.name == "Run the job"]
    assert run_step.returncode == 2
    assert "is neither a job id nor the start of one" in run_step.output


def store_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
