"""The job types capture runs and the lanes that can run each (what the router and the
request checks need, without loading the handlers; capture.handlers holds the code)."""

from __future__ import annotations

from jobstore import LANES

PULL_REQUEST_PARTS = {
    "pr-details": frozenset({"details"}),
    "pr-reviews": frozenset({"reviews"}),
    "pr-comments": frozenset({"comments"}),
    "historical-sync": frozenset({"details", "reviews", "comments"}),
}
JOB_TYPES: dict[str, tuple[str, ...]] = {
    "repository-sync": LANES,
    "repository-refresh": LANES,
    "github-webhooks": LANES,
    **dict.fromkeys(PULL_REQUEST_PARTS, LANES),
}


def capable(job_type: str) -> tuple[str, ...]:
    """The lanes that can run `job_type` (all lanes for a type this code does not know)."""
    return JOB_TYPES.get(job_type, LANES)
