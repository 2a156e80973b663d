"""The dispatcher wired to this process's lane settings and the job types' capabilities."""

from __future__ import annotations

import httpx

from capture.handlers import load
from jobstore.clikit import Session
from jobstore.dispatcher import Dispatcher, open_lanes
from jobstore.routing import LANES


def capable(job_type: str) -> tuple[str, ...]:
    """The lanes that can run `job_type` (all lanes for a type this code does not know)."""
    entry = load().get(job_type)
    return entry.lanes if entry else LANES


def dispatcher(s: Session, client: httpx.Client | None = None) -> Dispatcher:
    """A dispatcher on the session's store; its HTTP client closes with the session."""
    if client is None:
        client = httpx.Client(timeout=httpx.Timeout(30.0))
        s.on_close(client.close)
    lanes, problems = open_lanes(s.settings, client)
    return Dispatcher(s.store, lanes, problems, capable)
