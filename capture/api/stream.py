"""Server-sent events of one job: every event of its history from a version on, as it is
written (checked every POLL seconds), until the job ends. A client that reconnects sends
Last-Event-ID (the last version it saw) and misses nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from uuid import UUID

from jobstore import JobStore, audit_fields

POLL = 0.05  # seconds between checks of the job's version: the p95 delay budget is 200 ms
KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing an idle stream
LONGEST = 3600.0  # then the stream ends; the client reconnects with Last-Event-ID
ENDED = ("completed", "failed", "cancelled")


def frame(event: str, data: dict, version: int | None = None) -> str:
    head = f"id: {version}\n" if version is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def job_events(store: JobStore, job_id: UUID, after: int = 0) -> Iterator[str]:
    seen, started, quiet = after, time.monotonic(), time.monotonic()
    while time.monotonic() - started < LONGEST:
        head = store.head(job_id)
        if head is not None and head[0] > seen:
            for event in store.events_since(job_id, seen):
                seen = event.originator_version
                fields = {"at": event.timestamp.isoformat(), **audit_fields(event)}
                yield frame(type(event).__name__, fields, seen)
            quiet = time.monotonic()
            if head[1] in ENDED:
                yield frame("end", {"status": head[1]})
                return
        elif time.monotonic() - quiet > KEEPALIVE:
            quiet = time.monotonic()
            yield ": keep-alive\n\n"
        time.sleep(POLL)
