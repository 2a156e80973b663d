"""The Inngest lane: one event per job attempt through Inngest's Event API."""

from __future__ import annotations

import httpx

from jobstore.domain import Job
from jobstore.lanes import DispatchError, LaneMisconfigured

EVENT = "capture/job.requested"


def event_id(job: Job) -> str:
    """Inngest de-duplicates by this id for 24 hours: one delivery per job attempt. A
    re-dispatch of the same attempt (the first was accepted and never ran) needs a new id,
    or Inngest would accept it and silently drop it."""
    base = f"{job.id}-{job.attempt}"
    return base if job.dispatches == 0 else f"{base}-redispatch-{job.dispatches}"


def event_data(job: Job) -> dict[str, object]:
    """The job id and attempt; `repository` is only the function's concurrency key (Inngest
    keys concurrency on event data) and the function never reads it."""
    return {"job_id": str(job.id), "attempt": job.attempt, "repository": job.repository.lower()}


class InngestLane:
    """POST {event api}/e/{key} with [{name, data, id}]; the id de-duplicates for 24 hours."""

    name = "inngest"

    def __init__(self, client: httpx.Client, base_url: str, event_key: str) -> None:
        if not event_key:
            raise DispatchError("INNGEST_EVENT_KEY is not set: the Inngest lane is down")
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/e/{event_key}"

    def send(self, job: Job) -> str:
        event = {"name": EVENT, "id": event_id(job), "data": event_data(job)}
        try:
            response = self.client.post(self.url, json=[event])
        except httpx.HTTPError as exc:
            raise DispatchError(f"Inngest unreachable: {type(exc).__name__}") from None
        if response.status_code in (401, 403, 404):
            raise LaneMisconfigured(
                f"configuration: INNGEST_EVENT_KEY was refused by the Event API at "
                f"{self.base_url} (HTTP {response.status_code}); check the key and "
                "INNGEST_EVENT_API_BASE_URL"
            )
        if response.status_code != 200:
            raise DispatchError(f"Inngest answered HTTP {response.status_code}")
        ids = response.json().get("ids") or []
        if len(ids) != 1:
            raise DispatchError(f"Inngest accepted {len(ids)} events for one")
        return ids[0]
