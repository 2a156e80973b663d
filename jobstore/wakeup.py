"""Waking a lane's worker: the recorder NOTIFYs `jobstore_routed` with the lane and the
jobs it routed in the same transaction, so a waiting worker wakes within milliseconds of
the commit; if the LISTEN connection dies the worker polls and listens again."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from jobstore.db import open_connection
from jobstore.errors import DatabaseUnavailable
from jobstore.recorder import ROUTED_CHANNEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hint:
    """A job a notification named: routed at `version` on its `attempt`."""

    job_id: str
    version: int
    attempt: int

    @classmethod
    def parse(cls, text: str) -> Hint:
        job_id, version, attempt = text.split(":")
        return cls(job_id, int(version), int(attempt))


class Wakeup:
    """Waits until a job is routed to `lane` (or `timeout` passes)."""

    def __init__(self, url: str, lane: str) -> None:
        self.url = url
        self.lane = lane
        self.conn: psycopg.Connection | None = None

    def listen(self) -> None:
        """Starts listening; call before looking for work so nothing routed meanwhile is missed."""
        self.close()
        try:
            self.conn = open_connection(self.url, "listen")
            self.conn.execute(f"LISTEN {ROUTED_CHANNEL}")
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("LISTEN failed (%s); polling instead", type(exc).__name__)
            self.close()

    def wait(self, timeout: float) -> list[Hint] | None:
        """The jobs a notification for this lane named (possibly none) once woken, or
        None after `timeout` without one."""
        if self.conn is None:
            self.listen()
            if self.conn is None:
                time.sleep(timeout)
                return None
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                for note in self.conn.notifies(timeout=left, stop_after=1):
                    lane, *hints = note.payload.split(" ")
                    if lane == self.lane:
                        return [Hint.parse(h) for h in hints]
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("LISTEN connection lost (%s); polling until it is back", first)
            self.close()
        return None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
