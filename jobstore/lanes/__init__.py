"""Lanes: how a routed job reaches the runner that will claim it.

A lane message carries only the job id and the attempt; the consumer reads everything
else from the store, so producer and consumer can never disagree on a payload shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from jobstore.store import JobStore, utcnow


class DispatchError(Exception):
    """The lane refused or could not take the job (recorded as DispatchFailed)."""


class Lane(Protocol):
    name: str

    def send(self, job_id: UUID, attempt: int) -> str:
        """Hands the job to the lane; returns its reference ("ID" or "ID URL")."""
        ...


@dataclass(frozen=True)
class Dispatch:
    job_id: UUID
    ok: bool
    detail: str


def dispatch(
    store: JobStore, job_id: UUID | str, lane: Lane, now: datetime | None = None
) -> Dispatch:
    """Sends a routed job to `lane`, recording Dispatched or DispatchFailed with the reason."""
    job = store.get(job_id)
    now = now or utcnow()
    try:
        ref = lane.send(job.id, job.attempt)
    except DispatchError as exc:
        store.dispatch_failed(job.id, str(exc), now)
        return Dispatch(job.id, False, str(exc))
    store.dispatched(job.id, ref, now)
    return Dispatch(job.id, True, ref)
