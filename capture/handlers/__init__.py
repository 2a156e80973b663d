"""Job types: one handler each, by name, with the lanes that can run it (capture.jobtypes)."""

from __future__ import annotations

from capture.handlers import pulls, refresh, sync, webhooks
from capture.handlers.base import Context, Handler, Outcome, Progress
from capture.jobtypes import JOB_TYPES, PULL_REQUEST_PARTS, capable

__all__ = ["HANDLERS", "Context", "Handler", "Outcome", "Progress", "capable"]

RUN = {
    "repository-sync": sync.repository_sync,
    "repository-refresh": refresh.run,
    "github-webhooks": webhooks.run,
    **dict.fromkeys(PULL_REQUEST_PARTS, pulls.run),
}
HANDLERS: dict[str, Handler] = {
    name: Handler(name, RUN[name], lanes) for name, lanes in JOB_TYPES.items()
}
