"""Job types: one handler each, by name, with the lanes that can run it."""

from __future__ import annotations

from capture.handlers import pulls, refresh, sync
from capture.handlers.base import Context, Handler, Outcome, Progress
from jobstore.routing import LANES

__all__ = ["HANDLERS", "Context", "Handler", "Outcome", "Progress", "capable"]

HANDLERS: dict[str, Handler] = {
    "repository-sync": Handler("repository-sync", sync.repository_sync, LANES),
    "repository-refresh": Handler("repository-refresh", refresh.run, LANES),
    **{name: Handler(name, pulls.run, LANES) for name in pulls.PARTS},
}


def capable(job_type: str) -> tuple[str, ...]:
    """The lanes that can run `job_type` (all lanes for a type this code does not know)."""
    entry = HANDLERS.get(job_type)
    return entry.lanes if entry else LANES
