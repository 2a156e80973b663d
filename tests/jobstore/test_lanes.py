"""Lane dispatch against the sandbox's Actions and Inngest APIs: refs and failures recorded."""

from __future__ import annotations

import httpx
import pytest

from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Sandbox, World
from jobstore.lanes import DispatchError, dispatch
from jobstore.lanes.github_actions import ActionsLane
from jobstore.lanes.inngest import InngestLane
from jobstore.routing import Route
from jobstore.spec import JobSpec

INPUTS = {"job_id": {"required": True}, "attempt": {"required": True}}


@pytest.fixture
def sandbox():
    sandbox = Sandbox(World())
    sandbox.register_workflow(
        "acme/ops",
        "capture-job.yml",
        INPUTS,
        run_name="capture ${{ inputs.job_id }} #${{ inputs.attempt }}",
    )
    return sandbox


@pytest.fixture
def client(sandbox):
    return httpx.Client(
        transport=sandbox.transport(),
        base_url="http://sandbox.invalid",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    )


@pytest.fixture
def routed(store):
    def make(lane: str):
        spec = JobSpec.create("pr-reviews", "acme/widgets", days=1, params={"lane": lane})
        return store.enqueue(spec, route=Route(lane, "explicit", "test")).job_id

    return make


def test_inngest_event_carries_the_job_id_and_attempt(store, sandbox, client, routed):
    job_id = routed("inngest")
    result = dispatch(
        store, job_id, InngestLane(client, "http://sandbox.invalid", DEFAULT_EVENT_KEY)
    )
    assert result.ok
    (event,) = sandbox.inngest.events
    # The job id and attempt; the repository is only the function's concurrency key.
    assert event["data"] == {"job_id": str(job_id), "attempt": 1, "repository": "acme/widgets"}
    assert event["id"] == f"{job_id}-1"
    job = store.get(job_id)
    assert (job.status.value, job.ref) == ("dispatched", result.detail)


def test_actions_dispatch_records_the_run_id_and_url(store, sandbox, client, routed):
    job_id = routed("github_actions")
    lane = ActionsLane(client, "http://sandbox.invalid", "acme/ops", "capture-job.yml")
    result = dispatch(store, job_id, lane)
    assert result.ok
    run_id, url = store.get(job_id).ref.split(" ")
    assert sandbox.actions.runs[int(run_id)].inputs == {"job_id": str(job_id), "attempt": "1"}
    assert url.endswith(f"/actions/runs/{run_id}")


def test_an_older_enterprise_server_is_retried_without_run_details(store, sandbox, client, routed):
    sandbox.actions.enterprise = True
    job_id = routed("github_actions")
    lane = ActionsLane(client, "http://sandbox.invalid", "acme/ops", "capture-job.yml")
    assert dispatch(store, job_id, lane).ok
    run_id = store.get(job_id).ref.split(" ")[0]
    assert sandbox.actions.runs[int(run_id)].display_title == f"capture {job_id} #1"


@pytest.mark.parametrize(
    ("fault", "workflow", "message"),
    [
        ("dispatch:422:1", "capture-job.yml", "HTTP 422"),
        (None, "missing.yml", "HTTP 404"),
    ],
)
def test_refused_dispatches_are_recorded_with_the_reason(
    store, sandbox, client, routed, fault, workflow, message
):
    if fault:
        sandbox.faults.add(fault)
    job_id = routed("github_actions")
    result = dispatch(
        store, job_id, ActionsLane(client, "http://sandbox.invalid", "acme/ops", workflow)
    )
    assert not result.ok
    assert message in result.detail
    assert result.misconfigured
    assert result.detail.startswith("configuration: ")
    job = store.get(job_id)
    assert job.status.value == "routed"
    assert type(store.history(job_id)[-1]).__name__ == "DispatchFailed"


def test_inngest_down_and_undeclared_inputs_fail_the_dispatch(store, sandbox, client, routed):
    sandbox.faults.add("inngest:down")
    job_id = routed("inngest")
    result = dispatch(
        store, job_id, InngestLane(client, "http://sandbox.invalid", DEFAULT_EVENT_KEY)
    )
    assert "HTTP 503" in result.detail
    lane = ActionsLane(
        client, "http://sandbox.invalid", "acme/ops", "capture-job.yml", declared={"job_id"}
    )
    other = routed("github_actions")
    assert "does not declare inputs ['attempt']" in dispatch(store, other, lane).detail


def test_a_lane_without_configuration_is_down_with_a_clear_message(client):
    with pytest.raises(DispatchError, match="INNGEST_EVENT_KEY is not set"):
        InngestLane(client, "http://sandbox.invalid", "")
    with pytest.raises(DispatchError, match="CAPTURE_ACTIONS_REPOSITORY is not set"):
        ActionsLane(client, "http://sandbox.invalid", "", "capture-job.yml")
