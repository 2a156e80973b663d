"""The Inngest lane: one event per job attempt through Inngest's Event API."""

from __future__ import annotations

from uuid import UUID

import httpx

from jobstore.lanes import DispatchError

EVENT = "capture/job.requested"


class InngestLane:
    """POST {event api}/e/{key} with [{name, data, id}]; the id de-duplicates for 24 hours."""

    name = "inngest"

    def __init__(self, client: httpx.Client, base_url: str, event_key: str) -> None:
        if not event_key:
            raise DispatchError("INNGEST_EVENT_KEY is not set: the Inngest lane is down")
        self.client = client
        self.url = f"{base_url.rstrip('/')}/e/{event_key}"

    def send(self, job_id: UUID, attempt: int) -> str:
        event = {
            "name": EVENT,
            "id": f"{job_id}-{attempt}",
            "data": {"job_id": str(job_id), "attempt": attempt},
        }
        try:
            response = self.client.post(self.url, json=[event])
        except httpx.HTTPError as exc:
            raise DispatchError(f"Inngest unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise DispatchError(f"Inngest answered HTTP {response.status_code}")
        ids = response.json().get("ids") or []
        if len(ids) != 1:
            raise DispatchError(f"Inngest accepted {len(ids)} events for one")
        return ids[0]
