"""Lanes: how a routed job reaches the runner that will claim it.

A lane message carries only the job id and the attempt; the consumer reads everything
else from the store, so producer and consumer can never disagree on a payload shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from jobstore.domain import Job
from jobstore.errors import InvalidTransition
from jobstore.recorder import DispatchOutcome
from jobstore.store import JobStore, utcnow

__all__ = ["Dispatch", "DispatchError", "Lane", "LaneMisconfigured", "dispatch"]


class DispatchError(Exception):
    """The lane refused or could not take the job (recorded as DispatchFailed)."""


class LaneMisconfigured(DispatchError):
    """The lane refused us, not the job (401, 403, 404, 422): its configuration is wrong
    and a person must fix it. The message names what to check."""


class Lane(Protocol):
    name: str

    def send(self, job: Job) -> str:
        """Hands the job's current attempt to the lane; returns its reference ("ID" or
        "ID URL"). Only the job id and the attempt travel."""
        ...


@dataclass(frozen=True)
class Dispatch:
    job_id: UUID
    ok: bool
    detail: str
    misconfigured: bool = False  # the lane's configuration is wrong (see LaneMisconfigured)


def dispatch(
    store: JobStore, job_id: UUID | str, lane: Lane, now: datetime | None = None
) -> Dispatch:
    """Sends a routed job to `lane`, recording Dispatched or DispatchFailed with the reason."""
    job = store.get(job_id)
    now = now or utcnow()
    try:
        ref = lane.send(job)
    except DispatchError as exc:
        store.dispatch_failed(job.id, str(exc), now)
        return Dispatch(job.id, False, str(exc), isinstance(exc, LaneMisconfigured))
    try:
        store.dispatched(job.id, ref, now)
    except InvalidTransition:  # the lane started it before we could say we sent it
        store.heads.record_dispatch(DispatchOutcome(lane.name, job.id, True, None, now))
        return Dispatch(job.id, True, f"{ref} (the job had moved on: {store.get(job.id).status})")
    return Dispatch(job.id, True, ref)
