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

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import flask
import inngest
import inngest.flask

from capture.attempt import Runner
from capture.settings import InngestSettings
from capture.wsgi import BodyLimit, Server
from jobstore import INNGEST_EVENT as EVENT
from jobstore import JobNotFound

APP_ID = "prcapture"
FUNCTION_ID = "capture-job"
SERVE_PATH = "/api/inngest"

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
    inngest.flask.serve(app, sdk, [fn], serve_path=SERVE_PATH)
    return app, fn


def serve(app: flask.Flask, host: str, port: int) -> Server:
    """A production WSGI server (waitress; threads: Inngest calls steps concurrently),
    not yet started."""
    return Server(BodyLimit(app), host, port, threads=8)
