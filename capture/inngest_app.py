"""The Inngest lane's consumer: one function, written with the `inngest` SDK, that runs a
job attempt with the same code as every other lane (capture.runner).

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

import inngest

from jobstore.config import LaneSettings
from jobstore.lanes.inngest import EVENT

APP_ID = "prcapture"
FUNCTION_ID = "capture-job"
SERVE_PATH = "/api/inngest"

# Runs one attempt; returns a JSON-able result with at least "outcome" and "detail".
RunAttempt = Callable[[str, int], dict[str, Any]]


def client(settings: LaneSettings, logger: logging.Logger | None = None) -> inngest.Inngest:
    """The SDK client: production mode (signatures checked) unless INNGEST_DEV is set."""
    if not settings.inngest_dev and not settings.inngest_signing_key:
        raise ValueError("INNGEST_SIGNING_KEY is not set (or set INNGEST_DEV=1 for the dev server)")
    return inngest.Inngest(
        app_id=APP_ID,
        is_production=not settings.inngest_dev,
        signing_key=settings.inngest_signing_key.reveal() or None,
        event_key=settings.inngest_event_key.reveal() or None,
        api_base_url=settings.inngest_base_url,
        event_api_base_url=settings.inngest_event_api,
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
