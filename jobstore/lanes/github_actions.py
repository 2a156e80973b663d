"""The GitHub Actions lane: workflow_dispatch of the capture workflow with the job id."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import httpx

from jobstore.domain import Job
from jobstore.errors import InvalidTransition
from jobstore.lanes import DispatchError, LaneMisconfigured
from jobstore.store import JobStore

MAX_INPUTS = 25
MAX_PAYLOAD = 65_535
MATRIX_LIMIT = 256  # GitHub's most jobs per matrix
# The historical-sync workflow's max-parallel: a run plans no more legs than it starts at
# once, so every child it holds is on a runner (and counted in the lane's capacity).
MATRIX_PARALLEL = 4


class ActionsLane:
    """POST /repos/{repo}/actions/workflows/{file}/dispatches; 200 gives the run, 204 is
    found by its run-name, 400 retries without the field. The workflow's run-name must
    contain the job id and "#<attempt>" (for example "capture <job id> #<attempt>")."""

    name = "github_actions"

    def __init__(
        self,
        client: httpx.Client,
        api_url: str,
        repository: str,
        workflow: str | Callable[[str], str],
        ref: str = "main",
        declared: set[str] | None = None,
        token: str = "",
        observe: Callable[[httpx.Headers], None] = lambda headers: None,
    ) -> None:
        if not repository:
            raise DispatchError(
                "CAPTURE_ACTIONS_REPOSITORY is not set (no workflow repository): "
                "the Actions lane is down"
            )
        if token == "" and "authorization" not in client.headers:
            raise DispatchError("GITHUB_TOKEN is not set: the Actions lane is down")
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.base = f"{self.api_url}/repos/{repository}/actions"
        self.workflow_for = workflow if callable(workflow) else (lambda _type: workflow)
        self.ref = ref
        self.declared = declared
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.observe = observe  # the dispatch token's budget (1,000 an hour in Actions)

    def inputs(self, job_id: UUID, attempt: int, workflow: str = "") -> dict[str, str]:
        inputs = {"job_id": str(job_id), "attempt": str(attempt)}
        if self.declared is not None and set(inputs) - self.declared:
            missing = sorted(set(inputs) - self.declared)
            raise DispatchError(f"workflow {workflow} does not declare inputs {missing}")
        if len(inputs) > MAX_INPUTS or len(json.dumps(inputs)) > MAX_PAYLOAD:
            raise DispatchError("workflow inputs exceed GitHub's limits")
        return inputs

    def send(self, job: Job) -> str:
        job_id, attempt, workflow = job.id, job.attempt, self.workflow_for(job.job_type)
        inputs = self.inputs(job_id, attempt, workflow)
        body = {"ref": self.ref, "inputs": inputs, "return_run_details": True}
        url = f"{self.base}/workflows/{workflow}/dispatches"
        response = self._post(url, body)
        if response.status_code == 400:  # an older Enterprise server: no return_run_details
            body.pop("return_run_details")
            response = self._post(url, body)
        if response.status_code == 200:
            run = response.json()
            return f"{run['workflow_run_id']} {run['html_url']}"
        if response.status_code == 204:
            return self._find_run(job_id, attempt)
        message = ""
        with contextlib.suppress(ValueError, AttributeError):  # a non-JSON error page
            message = response.json().get("message", "")
        problem = self._misconfigured(response.status_code, workflow, message)
        if problem:
            raise LaneMisconfigured(problem[:300])
        raise DispatchError(f"Actions answered HTTP {response.status_code}: {message}"[:300])

    def _misconfigured(self, status: int, workflow: str, message: str) -> str:
        """What to fix when GitHub refused us rather than the job, or "" when it did not."""
        where = f"{self.repository} at {self.api_url}"
        if status == 401:
            return f"configuration: the dispatch token was refused by {self.api_url} (HTTP 401)"
        if status == 403 and "rate limit" not in message.lower():
            return (
                f"configuration: the dispatch token may not run workflows in {where} "
                f"(HTTP 403: {message}); it needs actions: write"
            )
        if status == 404:
            return (
                f"configuration: workflow {workflow} not found in {where} (HTTP 404); check "
                "CAPTURE_ACTIONS_REPOSITORY, CAPTURE_ACTIONS_WORKFLOW(S) and the token's access"
            )
        if status == 422:
            return (
                f"configuration: {where} refused to dispatch {workflow} at ref {self.ref} "
                f"(HTTP 422: {message}); check CAPTURE_ACTIONS_REF and the workflow's inputs"
            )
        return ""

    def _post(self, url: str, body: dict) -> httpx.Response:
        try:
            response = self.client.post(url, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise DispatchError(f"GitHub unreachable: {type(exc).__name__}") from None
        self.observe(response.headers)
        return response

    def _find_run(self, job_id: UUID, attempt: int) -> str:
        try:
            response = self.client.get(
                f"{self.base}/runs", params={"event": "workflow_dispatch"}, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise DispatchError(f"GitHub unreachable: {type(exc).__name__}") from None
        self.observe(response.headers)
        for run in response.json().get("workflow_runs", []):
            if (
                str(job_id) in run.get("display_title", "")
                and f"#{attempt}" in run["display_title"]
            ):
                return f"{run['id']} {run['html_url']}"
        return f"pending-run-for-{job_id}-{attempt}"  # dispatched; the run id is not known yet


def plan_matrix(store: JobStore, parent: Job, run_ref: str, now: datetime) -> list[UUID]:
    """The child jobs of `parent` this workflow run's matrix will run, recorded as
    dispatched to the run (`run_ref`, "ID URL") so the sweeper does not dispatch them
    again; if a leg never starts, their start deadline sends them back. At most the
    workflow's max-parallel, and only what the lane's capacity has room for (counted under
    the lane's lock, as the dispatcher does): the parent's next run plans the next ones."""
    if parent.lane != "github_actions" or not store.settings.lanes.fans_out(parent.job_type):
        return []
    planned: list[UUID] = []
    if not store.heads.routed_children(parent.id, 1):
        return planned
    capacity = store.settings.capacity("github_actions")
    with store.heads.dispatching(f"matrix:{parent.id}") as mine:
        if not mine:
            return planned  # another run of this parent is planning them
        room = MATRIX_PARALLEL
        if capacity is not None:
            room = min(room, capacity - mine.held("github_actions"))
        room = max(0, min(room, MATRIX_LIMIT))
        for child_id in store.heads.routed_children(parent.id, room) if room else []:
            if store.get(child_id).lane != "github_actions":
                continue
            with contextlib.suppress(InvalidTransition):  # taken meanwhile: not this run's
                store.dispatched(child_id, run_ref, now)
                planned.append(child_id)
    return planned
