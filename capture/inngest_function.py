"""The Inngest lane's consumer: one function, written with the `inngest` SDK, that runs a
job attempt with the same code as every other lane (capture.attempt).

- Trigger: `capture/job.requested`, whose data is the job id and attempt (and the
  repository, which only keys concurrency). Everything else is read from the store.
- Concurrency: `CAPTURE_INNGEST_CONCURRENCY` runs at once per repository.
- Retries: 0. The job store's policy is the one place that decides retries: a failed
  attempt is recorded there (RetryScheduled, then the sweeper dispatches attempt N+1 as a
  new event); the function then fails as non-retriable so Inngest shows it failed and
  does not run it again on its own.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any
from uuid import UUID

import flask
import inngest
import inngest.flask

from capture.attempt import Runner
from capture.settings import InngestSettings
from jobstore import INNGEST_EVENT as EVENT
from jobstore import JobNotFound

APP_ID = "prcapture"
FUNCTION_ID = "capture-job"
log = logging.getLogger(__name__)
SERVE_PATH = "/api/inngest"
SIGNATURE_AGE = 300  # seconds a signature is good for, either way (clocks drift)

# Runs one attempt; returns a JSON-able result with at least "outcome" and "detail".
RunAttempt = Callable[[str, int], dict[str, Any]]


def client(settings: InngestSettings, logger: logging.Logger | None = None) -> inngest.Inngest:
    """The SDK client: production mode (signatures checked) unless INNGEST_DEV is set."""
    settings.check()
    return inngest.Inngest(
        app_id=APP_ID,
        is_production=not settings.dev,
        signing_key=settings.signing_key.reveal() or None,
        event_key=settings.event_key.reveal() or None,
        api_base_url=settings.base_url,
        event_api_base_url=settings.event_api,
        logger=logger or logging.getLogger("capture.inngest"),
    )


def job_reference(data: Any) -> tuple[str, int]:
    """The job id and attempt from the event; anything else in it is ignored."""
    if not isinstance(data, dict):
        raise inngest.NonRetriableError("event data must be an object with job_id and attempt")
    try:
        job_id = str(UUID(str(data.get("job_id"))))
        attempt = int(data.get("attempt"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise inngest.NonRetriableError(
            f"event data needs a job_id (UUID) and an attempt (number), got {sorted(data)}"
        ) from None
    if attempt < 1:
        raise inngest.NonRetriableError(f"attempt must be at least 1, got {attempt}")
    return job_id, attempt


def function(
    sdk: inngest.Inngest, run_attempt: RunAttempt, concurrency: int = 1
) -> inngest.Function[Any]:
    @sdk.create_function(
        fn_id=FUNCTION_ID,
        name="Capture job",
        trigger=inngest.TriggerEvent(event=EVENT),
        concurrency=[inngest.Concurrency(limit=concurrency, key="event.data.repository")],
        retries=0,
    )
    def capture_job(ctx: inngest.ContextSync) -> dict[str, Any]:
        job_id, attempt = job_reference(ctx.event.data)
        result = ctx.step.run("run-job", run_attempt, job_id, attempt)
        if not isinstance(result, dict) or result.get("outcome") == "failed":
            detail = result.get("detail") if isinstance(result, dict) else result
            raise inngest.NonRetriableError(
                f"job {job_id} attempt {attempt} failed: {detail} (the job store retries it)"
            )
        return result

    return capture_job


def attempt_runner(runner: Runner, worker: str) -> RunAttempt:
    """Runs one attempt as the Inngest lane: the same run_job every lane uses."""

    def run(job_id: str, attempt: int) -> dict[str, Any]:
        try:
            result = runner.run(job_id, worker=worker, lane="inngest", attempt=attempt)
        except JobNotFound as exc:
            raise inngest.NonRetriableError(str(exc)) from None
        return {
            "job_id": str(result.job_id),
            "attempt": attempt,
            "outcome": result.outcome,
            "detail": result.detail,
            "items": result.items,
            "points": result.points,
        }

    return run


def create_app(
    settings: InngestSettings, run_attempt: RunAttempt, app: flask.Flask | None = None
) -> tuple[flask.Flask, inngest.Function[Any]]:
    """The function served at SERVE_PATH by the SDK's Flask adapter (on `app` if given:
    the HTTP API's, so one server carries both)."""
    sdk = client(settings)
    fn = function(sdk, run_attempt, settings.concurrency)
    app = app or flask.Flask("prcapture-inngest")
    inngest.flask.serve(
        app,
        sdk,
        [fn],
        serve_path=SERVE_PATH,
        serve_origin=settings.serve_origin,
        enable_unauthed_sync=False,  # a sync must be signed by Inngest (dev mode aside)
    )
    if not settings.dev:
        app.before_request(fresh_signatures)
    return app, fn


def fresh_signatures() -> flask.Response | None:
    """A call to the function (POST) or a sync (PUT) must carry Inngest's signature made
    within SIGNATURE_AGE seconds of now: a signed call recorded and replayed later is
    refused, unread. The SDK then checks the signature itself."""
    request = flask.request
    if request.path != SERVE_PATH or request.method not in ("POST", "PUT"):
        return None
    header = request.headers.get("X-Inngest-Signature") or ""
    stamps = urllib.parse.parse_qs(header).get("t") or [""]
    try:
        age = abs(time.time() - int(stamps[0]))
    except ValueError:
        return _unsigned("the request is not signed by Inngest (X-Inngest-Signature with t=)")
    if age > SIGNATURE_AGE:
        return _unsigned(f"the signature is {age:.0f}s from now; at most {SIGNATURE_AGE}s")
    return None


def _unsigned(message: str) -> flask.Response:
    log.warning("inngest: refused a %s: %s", flask.request.method, message)
    return flask.Response(json.dumps({"error": message}), 401, mimetype="application/json")
