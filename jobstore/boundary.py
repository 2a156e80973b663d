"""The one place where database driver errors become the job store's own: every public
method of JobStore and Heads raises JobStoreError, never a psycopg or eventsourcing error.

An unreachable, restarting or read-only database (a failover, a demoted primary, a
terminated connection) is DatabaseUnavailable: the caller waits and tries again.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from eventsourcing.persistence import IntegrityError, PersistenceError

from jobstore.errors import DatabaseReadOnly, DatabaseUnavailable, first_line

T = TypeVar("T")


def translate(exc: BaseException) -> DatabaseUnavailable:
    """The job store error for a driver error (IntegrityError is not one: callers use it)."""
    line = first_line(exc)
    if "read-only transaction" in line:
        return DatabaseReadOnly(f"the database is read-only: {line}")
    return DatabaseUnavailable(f"database unavailable: {line}")


def translated(method: Callable[..., T]) -> Callable[..., T]:
    """Wraps one method: driver errors leave it as DatabaseUnavailable."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except IntegrityError:
            raise
        except (PersistenceError, psycopg.Error) as exc:
            error = translate(exc)
            hook = getattr(args[0], "on_read_only", None) if args else None
            if isinstance(error, DatabaseReadOnly) and callable(hook):
                hook()  # its pooled sessions may all be read-only ones: made anew
            raise error from None

    return wrapper


def boundary(cls: type[T]) -> type[T]:
    """Class decorator: every public method the class defines is `translated`."""
    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, translated(value))
    return cls


def patiently(
    call: Callable[[], T], budget: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`call()`, waiting out a database that is briefly unavailable or read-only (a restart,
    a failover) for up to `budget` seconds, with capped exponential backoff."""
    waited, delay = 0.0, 0.25
    while True:
        try:
            return call()
        except DatabaseUnavailable:
            if waited >= budget:
                raise
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)


class Patient:
    """A view of an object (the job store) whose methods are called `patiently`: a worker
    in the middle of an attempt keeps its place through a short outage."""

    def __init__(self, target: Any, budget: float = 60.0) -> None:
        self._target = target
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        return functools.wraps(value)(
            lambda *args, **kwargs: patiently(lambda: value(*args, **kwargs), self._budget)
        )


def renew_connections(pool: Any) -> None:
    """Replaces every connection of a psycopg pool (those in use when they come back):
    after a read-only spell its sessions may keep the read-only default."""
    drain = getattr(pool, "drain", None)
    if callable(drain):
        drain()
