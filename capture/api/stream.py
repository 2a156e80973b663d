"""Server-sent events of jobs: every event of a job's history from a version on, as it is
written, until the job ends. A client that reconnects sends Last-Event-ID (the last
version it saw) and misses nothing.

Every stream of the server is fed by one `Hub`: one thread that checks, every POLL
seconds, the heads of all the jobs watched (one indexed read on one connection of its own,
however many streams are open) and reads the new events of those that moved. A stream
holds no thread and no connection: the server's event loop writes what the hub hands it
(capture.serving)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from jobstore import Database, DatabaseUnavailable, JobStore, audit_fields, watch

log = logging.getLogger(__name__)

POLL = 0.05  # seconds between checks of the watched jobs: the p95 delay budget is 200 ms
KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing an idle stream
LONGEST = 3600.0  # then the stream ends; the client reconnects with Last-Event-ID
UNCLAIMED = 30.0  # seconds an opened stream waits for the server to take it up
ENDED = ("completed", "failed", "cancelled")
KEEPALIVE_FRAME = ": keep-alive\n\n"
# A response of the app carrying this header is a stream's start: the server's event loop
# takes the stream up by the ticket it names and writes its frames (capture.serving).
STREAM_HEADER = b"x-prcapture-stream"


def stream_headers(ticket: str) -> dict[str, str]:
    """The headers of the response that starts the stream `ticket`."""
    return {"cache-control": "no-cache", "x-accel-buffering": "no", STREAM_HEADER.decode(): ticket}


def frame(event: str, data: dict, version: int | None = None) -> str:
    head = f"id: {version}\n" if version is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@dataclass(eq=False)
class Stream:
    """One client's stream of one job: what the hub has for it, until it is `ended`. The
    hub's thread adds frames; the server's event loop takes them (`take`) when woken."""

    job_id: UUID
    seen: int
    opened: float = field(default_factory=time.monotonic)
    frames: deque[str] = field(default_factory=deque)
    ended: bool = False
    wake: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, frames: list[str], end: bool = False) -> None:
        with self.lock:
            self.frames.extend(frames)
            self.ended = self.ended or end
            wake = self.wake
        if wake is not None:
            wake()

    def take(self) -> tuple[list[str], bool]:
        """The frames so far, and whether the stream has ended."""
        with self.lock:
            taken = list(self.frames)
            self.frames.clear()
            return taken, self.ended


# Streams opened and not yet taken up by the server, by ticket (every hub of the process).
_PENDING: dict[str, tuple[Hub, Stream]] = {}
_PENDING_LOCK = threading.Lock()


def claim(ticket: str) -> tuple[Hub, Stream] | None:
    """The stream a response's ticket names, and its hub; once."""
    with _PENDING_LOCK:
        return _PENDING.pop(ticket, None)


class Hub:
    """The event streams of one server (at most `limit` open) and the thread feeding them."""

    def __init__(
        self, store: JobStore, db: Database, limit: int = 10_000, poll: float = POLL
    ) -> None:
        self.store = store
        self.db = db
        self.limit = limit
        self.poll = poll
        self._streams: dict[UUID, set[Stream]] = {}
        self._open = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = False

    @property
    def open_streams(self) -> int:
        return self._open

    def open(self, job_id: UUID, after: int) -> str | None:
        """Opens a stream of `job_id` from version `after`: its ticket for the server to
        take it up with `claim`, or None when `limit` streams are open."""
        with self._lock:
            if self._open >= self.limit or self._stop.is_set():
                return None
            self._open += 1
            stream = Stream(job_id, after)
            self._streams.setdefault(job_id, set()).add(stream)
            ticket = secrets.token_urlsafe(16)
            with _PENDING_LOCK:
                _PENDING[ticket] = (self, stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="streams", daemon=True)
                self._thread.start()
        self._wake.set()
        return ticket

    def close(self, stream: Stream) -> None:
        """The client went away or the stream ended: it is fed no more."""
        with self._lock:
            watching = self._streams.get(stream.job_id)
            if watching is None or stream not in watching:
                return
            watching.discard(stream)
            if not watching:
                del self._streams[stream.job_id]
            self._open -= 1
        stream.put([], end=True)

    def stop(self) -> None:
        """Ends every stream (each says `end`) and the thread."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            streams = [s for watching in self._streams.values() for s in watching]
        for stream in streams:
            self.close(stream)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.db.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._streams:
                self._wake.wait()
                self._wake.clear()
                continue
            started = time.monotonic()
            self.tick()
            self._stop.wait(max(0.0, self.poll - (time.monotonic() - started)))

    def tick(self) -> None:
        """Hands every open stream what was written since it last looked."""
        with self._lock:
            self._drop_unclaimed()
            seen = {
                job_id: min(stream.seen for stream in watching)
                for job_id, watching in self._streams.items()
            }
        try:
            moved = watch.changes(self.store, self.db, seen)
        except DatabaseUnavailable as exc:
            if not self._down:
                log.warning("event streams wait for the database: %s", exc)
            self._down = True
            return
        if self._down:
            log.warning("event streams go on: the database answers again")
            self._down = False
        for job_id, change in moved.items():
            with self._lock:
                watching = list(self._streams.get(job_id, ()))
            for stream in watching:
                self._hand(stream, change)

    def _hand(self, stream: Stream, change: watch.Change) -> None:
        frames = []
        for event in change.events:
            if event.originator_version <= stream.seen:
                continue
            stream.seen = event.originator_version
            fields = {"at": event.timestamp.isoformat(), **audit_fields(event)}
            frames.append(frame(type(event).__name__, fields, stream.seen))
        end = None
        if change.unreadable:
            end = frame("end", {"status": "unreadable", "error": change.unreadable})
        elif change.status in ENDED and stream.seen >= change.version:
            end = frame("end", {"status": change.status})
        stream.put(frames + ([end] if end else []), end=end is not None)
        if end:
            self.close(stream)

    def _drop_unclaimed(self) -> None:
        """Streams opened for a response the server never took up (its client went away
        first), under the lock."""
        now = time.monotonic()
        with _PENDING_LOCK:
            unclaimed = [
                (ticket, stream)
                for ticket, (hub, stream) in _PENDING.items()
                if hub is self and now - stream.opened > UNCLAIMED
            ]
            for ticket, _ in unclaimed:
                del _PENDING[ticket]
        for _, stream in unclaimed:
            watching = self._streams.get(stream.job_id, set())
            if stream in watching:
                watching.discard(stream)
                self._open -= 1
                if not watching:
                    del self._streams[stream.job_id]
