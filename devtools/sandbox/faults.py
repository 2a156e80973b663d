"""The fault plan (scripted failures) and the ledger of every request."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

TARGETS = ("graphql", "rest", "dispatch", "inngest")
SPEC = re.compile(
    r"(?P<target>[a-z]+):(?P<kind>\d{3}|secondary|partial|down)"
    r"(?::(?:(?P<count>\d+)|(?P<seconds>\d+)s|pr=(?P<pr>\d+)(?:,(?P<field>files|comments))?))?"
)


@dataclass
class Fault:
    """One scripted failure: `count` next calls, or every call until `until`."""

    target: str
    kind: str  # an HTTP status ("502"), "secondary", "partial" (one PR's field fails), "down"
    count: int | None = None
    until: datetime | None = None
    pr: int | None = None
    field: str = "files"  # the PR's field a "partial" fault fails

    def is_spent(self, now: datetime) -> bool:
        if self.until is not None:
            return now >= self.until
        return self.count is not None and self.count <= 0


def parse_fault(text: str, now: datetime) -> Fault:
    """`graphql:502:3` (next 3 calls), `graphql:secondary:30s` (for 30 seconds),
    `graphql:partial:pr=17` (its files fail; `pr=17,comments`: its comments), `inngest:down`,
    `dispatch:422:1`."""
    match = SPEC.fullmatch(text.strip())
    if not match or match["target"] not in TARGETS:
        targets = ", ".join(TARGETS)
        raise ValueError(
            f"fault {text!r} is not TARGET:KIND[:N|:Ns|:pr=N[,FIELD]], TARGET one of {targets}"
        )
    count = int(match["count"]) if match["count"] else None
    until = now + timedelta(seconds=int(match["seconds"])) if match["seconds"] else None
    if count is None and until is None and match["kind"] not in ("partial", "down"):
        count = 1
    pr = int(match["pr"]) if match["pr"] else None
    return Fault(match["target"], match["kind"], count, until, pr, match["field"] or "files")


class FaultPlan:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, *faults: Fault | str) -> None:
        with self._lock:
            for fault in faults:
                self.faults.append(
                    parse_fault(fault, self.clock()) if isinstance(fault, str) else fault
                )

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, target: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        """The first live fault for `target` (of `kinds`), consuming one use of it."""
        now = self.clock()
        with self._lock:
            self.faults = [f for f in self.faults if not f.is_spent(now)]
            for fault in self.faults:
                if fault.target == target and (kinds is None or fault.kind in kinds):
                    if fault.count is not None and fault.kind != "partial":
                        fault.count -= 1
                    return fault
        return None

    def partial_prs(self) -> set[tuple[int, str]]:
        """(PR number, field) of every live "partial" fault."""
        now = self.clock()
        with self._lock:
            return {
                (f.pr, f.field)
                for f in self.faults
                if f.kind == "partial" and f.pr and not f.is_spent(now)
            }


@dataclass
class Entry:
    at: datetime
    method: str
    path: str
    kind: str
    status: int
    points: int = 0  # charged: for GraphQL the query's rateLimit.cost
    nodes: int = 0
    error: str = ""  # the type of a GraphQL answer's first error, e.g. MAX_NODE_LIMIT_EXCEEDED
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """Every request the sandbox answered, for tests and benchmarks to count."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._lock = threading.Lock()

    def record(self, entry: Entry) -> None:
        with self._lock:
            self.entries.append(entry)

    def summary(self, kind: str | None = None) -> dict[str, int]:
        with self._lock:
            chosen = [e for e in self.entries if kind is None or e.kind == kind]
        return {
            "requests": len(chosen),
            "points": sum(e.points for e in chosen),
            "nodes": sum(e.nodes for e in chosen),
            "errors": sum(e.status >= 400 for e in chosen),
        }

    def as_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**asdict(e), "at": e.at.isoformat()} for e in self.entries]

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
