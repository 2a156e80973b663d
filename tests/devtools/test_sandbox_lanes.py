"""Actions workflow_dispatch and runs; Inngest's Event API; handlers; the ledger."""

from __future__ import annotations

import json

import pytest

INPUTS = {"job_id": {"required": True}, "attempt": {"required": True}}


@pytest.fixture
def dispatch(gh, sandbox):
    sandbox.register_workflow(
        "acme/ops",
        "capture-job.yml",
        INPUTS,
        run_name="capture ${{ inputs.job_id }} #${{ inputs.attempt }}",
    )

    def send(body: dict, file: str = "capture-job.yml"):
        return gh.post(f"/repos/acme/ops/actions/workflows/{file}/dispatches", json=body)

    return send


GOOD = {"ref": "main", "inputs": {"job_id": "J1", "attempt": "1"}}


def test_dispatch_with_run_details_answers_200_with_the_run(dispatch, gh):
    response = dispatch({**GOOD, "return_run_details": True})
    assert response.status_code == 200
    details = response.json()
    assert set(details) == {"workflow_run_id", "run_url", "html_url"}
    run = gh.get(f"/repos/acme/ops/actions/runs/{details['workflow_run_id']}").json()
    assert run["display_title"] == "capture J1 #1"
    assert (run["event"], run["status"]) == ("workflow_dispatch", "queued")


def test_dispatch_without_run_details_answers_204_and_the_run_is_found_by_its_name(dispatch, gh):
    assert dispatch(GOOD).status_code == 204
    runs = gh.get("/repos/acme/ops/actions/runs?event=workflow_dispatch").json()
    assert runs["total_count"] == 1
    assert runs["workflow_runs"][0]["display_title"] == "capture J1 #1"


def test_an_older_enterprise_server_refuses_return_run_details_with_400(dispatch, sandbox):
    sandbox.actions.enterprise = True
    assert dispatch({**GOOD, "return_run_details": True}).status_code == 400
    assert dispatch(GOOD).status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"ref": "main", "inputs": {"job_id": "J", "attempt": "1", "x": "y"}},
            422,
            'Unexpected inputs provided: ["x"]',
        ),
        ({"ref": "main", "inputs": {"job_id": "J"}}, 422, "Required input 'attempt' not provided"),
        ({"ref": "nope", "inputs": GOOD["inputs"]}, 422, "No ref found for: nope"),
        ({"ref": "main", "inputs": {f"i{n}": "v" for n in range(26)}}, 422, "up to 25"),
    ],
)
def test_dispatch_validates_ref_and_inputs(dispatch, body, status, message):
    response = dispatch(body)
    assert response.status_code == status
    assert message in response.json()["message"]


def test_unknown_workflow_is_404_and_dispatch_faults_apply(dispatch, sandbox):
    assert dispatch(GOOD, file="other.yml").status_code == 404
    sandbox.faults.add("dispatch:422:1")
    assert dispatch(GOOD).status_code == 422
    assert dispatch(GOOD).status_code == 204


def test_run_filters_by_status_and_created(dispatch, gh, sandbox, clock):
    dispatch(GOOD)
    clock.advance(hours=2)
    dispatch({**GOOD, "return_run_details": True})
    sandbox.actions.finish(max(sandbox.actions.runs), "success")
    assert gh.get("/repos/acme/ops/actions/runs?status=completed").json()["total_count"] == 1
    since = clock.now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    created = gh.get(f"/repos/acme/ops/actions/runs?created=>={since}").json()
    assert created["total_count"] == 1


def test_a_registered_handler_plays_the_runner(dispatch, sandbox):
    seen = []
    sandbox.actions.handlers.callbacks.append(lambda run: seen.append(run.inputs["job_id"]))
    dispatch(GOOD)
    sandbox.drain()
    assert seen == ["J1"]


def test_inngest_accepts_one_event_or_a_list_and_dedupes_by_id_for_24_hours(gh, sandbox, clock):
    delivered = []
    sandbox.inngest.handlers.callbacks.append(lambda e: delivered.append(e["data"]["job_id"]))
    one = gh.post(
        "/e/sandbox-event-key", json={"name": "capture/job", "id": "J1-1", "data": {"job_id": "J1"}}
    )
    assert one.json()["status"] == 200
    assert len(one.json()["ids"]) == 1
    batch = [
        {"name": "capture/job", "id": "J1-1", "data": {"job_id": "J1"}},
        {"name": "capture/job", "id": "J2-1", "data": {"job_id": "J2"}},
    ]
    assert len(gh.post("/e/sandbox-event-key", json=batch).json()["ids"]) == 2
    clock.advance(hours=25)
    gh.post("/e/sandbox-event-key", json=batch[0])
    sandbox.drain()
    assert delivered == ["J1", "J2", "J1"]  # the duplicate inside 24 hours was not delivered


@pytest.mark.parametrize(
    ("key", "body", "status"),
    [
        ("wrong-key", {"name": "x"}, 401),
        ("sandbox-event-key", {"data": {}}, 400),
        ("sandbox-event-key", [], 400),
    ],
)
def test_inngest_refuses_bad_keys_and_nameless_events(gh, key, body, status):
    response = gh.post(f"/e/{key}", content=json.dumps(body))
    assert response.status_code == status
    assert response.json()["status"] == status


def test_inngest_down(gh, sandbox):
    sandbox.faults.add("inngest:down")
    assert gh.post("/e/sandbox-event-key", json={"name": "x"}).status_code == 503
    sandbox.faults.clear()
    assert gh.post("/e/sandbox-event-key", json={"name": "x"}).status_code == 200


def test_the_ledger_records_every_request_with_points_and_nodes(gh, sandbox):
    gh.post(
        "/graphql",
        json={
            "query": '{ repository(owner: "acme", name: "widgets") '
            "{ pullRequests(first: 10) { nodes { number } } } }"
        },
    )
    gh.get("/repos/acme/widgets")
    gh.post("/e/sandbox-event-key", json={"name": "x"})
    kinds = [(e.kind, e.status, e.points, e.nodes) for e in sandbox.ledger.entries]
    assert kinds == [("graphql", 200, 1, 10), ("rest", 200, 1, 0), ("inngest", 200, 0, 0)]
    assert gh.get("/_sandbox/ledger").json()["summary"]["requests"] == 3
