"""Taking in a capture request, the one use case behind `bin/enqueue` and the HTTP API's
POST: enqueue, route and dispatch it (`Dispatcher.submit`), keep the repository hot for a
while when a person asked, and say what happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from capture.freshness.loop import on_request
from capture.freshness.registry import Registry
from capture.freshness.rules import FreshnessSettings
from jobstore import Dispatcher, JobSpec, Submitted


@dataclass(frozen=True)
class Intake:
    """A request's outcome: the job (new, or the active one with its dedupe key), how
    dispatching went, and whether its tracked repository was promoted to hot."""

    submitted: Submitted
    promoted: bool

    @property
    def created(self) -> bool:
        return self.submitted.enqueued.created

    def document(self) -> dict[str, Any]:
        """The answer as a JSON-able document (what `--json` prints and the API answers)."""
        job, enqueued, sent = self.submitted.job, self.submitted.enqueued, self.submitted.sent
        return {
            "job_id": str(job.id),
            "created": enqueued.created,
            "coalesced": enqueued.coalesced,
            "lane": job.lane,
            "rule": job.rule,
            "reason": job.reason,
            "status": job.status.value,
            "priority": job.priority,
            "dispatched": job.status.value == "dispatched",
            "dispatch": sent.detail if sent else None,
            "promoted": self.promoted,
        }


def take(
    dispatcher: Dispatcher,
    registry: Registry,
    spec: JobSpec,
    now: datetime,
    freshness: FreshnessSettings,
    lane: str | None = None,
) -> Intake:
    """Submits `spec` (to `lane` if given, else where the router decides) and promotes its
    repository when a person asked for it."""
    submitted = dispatcher.submit(spec, now, lane)
    return Intake(submitted, on_request(registry, spec, now, freshness))
