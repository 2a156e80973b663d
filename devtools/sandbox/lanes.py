"""GitHub Actions dispatch and runs, and Inngest's Event API, as the sandbox serves them."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devtools.sandbox.rest_shapes import Shapes

MAX_INPUTS = 25
MAX_PAYLOAD = 65_535
DEDUPE_WINDOW = timedelta(hours=24)


@dataclass
class Workflow:
    name: str
    inputs: dict[str, dict[str, Any]]  # name -> {"required": bool, "default": ...}
    run_name: str = ""  # a template like "capture ${{ inputs.job_id }}"


@dataclass
class Run:
    id: int
    repository: str
    workflow: str
    name: str
    display_title: str
    ref: str
    inputs: dict[str, str]
    created_at: datetime
    status: str = "queued"
    conclusion: str | None = None
    html_url: str = ""
    url: str = ""

    def as_json(self, base: str) -> dict[str, Any]:
        """A WorkflowRun as GitHub's API shows it (`base`: the sandbox's URL)."""
        api = f"{base}/repos/{self.repository}"
        sha = hashlib.sha1(f"{self.repository}@{self.ref}".encode()).hexdigest()
        workflow_id = int(hashlib.sha1(self.workflow.encode()).hexdigest()[:7], 16)
        created = self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        repository = Shapes(base).named_repository(self.repository)
        return {
            "id": self.id,
            "name": self.name,
            "node_id": f"WFR_{self.id}",
            "display_title": self.display_title,
            "event": "workflow_dispatch",
            "status": self.status,
            "conclusion": self.conclusion,
            "head_branch": self.ref,
            "head_sha": sha,
            "path": f".github/workflows/{self.workflow}",
            "run_number": self.id % 100_000,
            "run_attempt": 1,
            "workflow_id": workflow_id,
            "check_suite_id": self.id,
            "check_suite_node_id": f"CS_{self.id}",
            "pull_requests": [],
            "created_at": created,
            "updated_at": created,
            "run_started_at": created,
            "html_url": self.html_url,
            "url": self.url,
            "jobs_url": f"{self.url}/jobs",
            "logs_url": f"{self.url}/logs",
            "check_suite_url": f"{api}/check-suites/{self.id}",
            "artifacts_url": f"{self.url}/artifacts",
            "cancel_url": f"{self.url}/cancel",
            "rerun_url": f"{self.url}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{api}/actions/workflows/{workflow_id}",
            "head_commit": {
                "id": sha,
                "tree_id": hashlib.sha1(f"tree:{sha}".encode()).hexdigest(),
                "message": f"Run {self.workflow}",
                "timestamp": created,
                "author": {"name": "sandbox", "email": "sandbox@example.invalid"},
                "committer": {"name": "sandbox", "email": "sandbox@example.invalid"},
            },
            "repository": repository,
            "head_repository": repository,
        }


class Rejected(Exception):
    """The request is refused: `status` and GitHub's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Handlers:
    """Calls registered handlers in the background, so dispatches return at once."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-handler")
        self.pending: list[Future] = []
        self.errors: list[BaseException] = []

    def fire(self, item: Any) -> None:
        for callback in self.callbacks:
            self.pending.append(self.pool.submit(self._call, callback, item))

    def _call(self, callback: Callable, item: Any) -> None:
        try:
            callback(item)
        except BaseException as exc:  # a test's runner failing must be reported, not lost
            self.errors.append(exc)

    def drain(self, timeout: float = 60) -> None:
        """Waits for every handler started so far (tests call this before asserting)."""
        while self.pending:
            self.pending.pop(0).result(timeout=timeout)


class Actions:
    def __init__(self, clock: Callable[[], datetime], base_url: str) -> None:
        self.clock = clock
        self.base_url = base_url
        self.workflows: dict[tuple[str, str], Workflow] = {}
        self.branches = {"main"}
        self.runs: dict[int, Run] = {}
        self.enterprise = False  # an older GHES refuses return_run_details with 400
        self.handlers = Handlers()
        self._ids = itertools.count(7_000_000_001)
        self._lock = threading.Lock()

    def register(self, repository: str, file: str, workflow: Workflow) -> None:
        self.workflows[(repository.lower(), file)] = workflow

    def dispatch(self, repository: str, file: str, raw: bytes) -> tuple[int, dict | None]:
        workflow = self.workflows.get((repository.lower(), file))
        if workflow is None:
            raise Rejected(404, "Not Found")
        if len(raw) > MAX_PAYLOAD:
            raise Rejected(422, f"inputs are too large (over {MAX_PAYLOAD} characters)")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise Rejected(400, "Problems parsing JSON") from None
        if self.enterprise and "return_run_details" in body:
            raise Rejected(400, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
        ref = body.get("ref")
        if not isinstance(ref, str) or ref.removeprefix("refs/heads/") not in self.branches:
            raise Rejected(422, f"No ref found for: {ref}")
        inputs = body.get("inputs") or {}
        if len(inputs) > MAX_INPUTS:
            raise Rejected(
                422,
                f"you may only define up to {MAX_INPUTS} `inputs` for a workflow_dispatch event",
            )
        unexpected = sorted(set(inputs) - set(workflow.inputs))
        if unexpected:
            raise Rejected(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        for name, spec in workflow.inputs.items():
            if spec.get("required") and name not in inputs and "default" not in spec:
                raise Rejected(422, f"Required input '{name}' not provided")
        values = {k: str(spec.get("default", "")) for k, spec in workflow.inputs.items()}
        values |= {k: str(v) for k, v in inputs.items()}
        title = re.sub(
            r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}",
            lambda m: values.get(m[1], ""),
            workflow.run_name or workflow.name,
        )
        with self._lock:
            run_id = next(self._ids)
        run = Run(
            run_id,
            repository,
            file,
            workflow.name,
            title,
            ref,
            values,
            self.clock(),
            html_url=f"{self.base_url}/{repository}/actions/runs/{run_id}",
            url=f"{self.base_url}/repos/{repository}/actions/runs/{run_id}",
        )
        self.runs[run_id] = run
        self.handlers.fire(run)
        if body.get("return_run_details"):
            return 200, {"workflow_run_id": run_id, "run_url": run.url, "html_url": run.html_url}
        return 204, None

    def list_runs(self, repository: str, query: dict[str, str]) -> dict:
        runs = [r for r in self.runs.values() if r.repository.lower() == repository.lower()]
        if query.get("event"):
            runs = [r for r in runs if query["event"] == "workflow_dispatch"]
        if query.get("status"):
            runs = [r for r in runs if query["status"] in (r.status, r.conclusion)]
        if query.get("created"):
            runs = [r for r in runs if _created_matches(r.created_at, query["created"])]
        runs.sort(key=lambda r: r.id, reverse=True)
        per_page = min(int(query.get("per_page", 30)), 100)
        return {
            "total_count": len(runs),
            "workflow_runs": [r.as_json(self.base_url) for r in runs[:per_page]],
        }

    def finish(self, run_id: int, conclusion: str) -> None:
        run = self.runs.get(run_id)
        if run is not None:  # a scheduled run was never dispatched through the API
            run.status, run.conclusion = "completed", conclusion


def _created_matches(created: datetime, expression: str) -> bool:
    """GitHub's `created` filter: `>=2026-01-01T00:00:00Z`, `<=...`, or `A..B`."""

    def at(text: str) -> datetime:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=created.tzinfo)

    if ".." in expression:
        start, end = expression.split("..")
        return at(start) <= created <= at(end)
    for op, test in (
        (">=", lambda a, b: a >= b),
        ("<=", lambda a, b: a <= b),
        (">", lambda a, b: a > b),
        ("<", lambda a, b: a < b),
    ):
        if expression.startswith(op):
            return test(created, at(expression[len(op) :]))
    return created.date() == at(expression).date()


@dataclass
class Inngest:
    """Inngest's Event API: events accepted, de-duplicated by their `id` for 24 hours."""

    clock: Callable[[], datetime]
    keys: set[str]
    events: list[dict] = field(default_factory=list)
    seen: dict[str, datetime] = field(default_factory=dict)
    handlers: Handlers = field(default_factory=Handlers)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def send(self, key: str, raw: bytes) -> list[str]:
        if key not in self.keys:
            raise Rejected(401, "Event key not found")
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            raise Rejected(400, "Unable to parse JSON") from None
        batch = body if isinstance(body, list) else [body]
        if not batch or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] for e in batch
        ):
            raise Rejected(400, "Each event needs a non-empty `name`")
        now = self.clock()
        ids = []
        for event in batch:
            internal = f"01SANDBOX{next(self._ids):017d}"
            ids.append(internal)
            key_id = event.get("id")
            if key_id and key_id in self.seen and now - self.seen[key_id] < DEDUPE_WINDOW:
                continue  # accepted, not delivered again
            if key_id:
                self.seen[key_id] = now
            delivered = {**event, "internal_id": internal, "received_at": now.isoformat()}
            self.events.append(delivered)
            self.handlers.fire(delivered)
        return ids
