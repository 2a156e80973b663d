"""Rate-limit accounting per token, as GitHub documents it: hourly budgets, per-minute
secondary limits and concurrent requests."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
PER_MINUTE = {"graphql": 2000, "core": 900}
CONCURRENT = 100


@dataclass
class Window:
    limit: int
    used: int
    reset_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self, resource: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(int(self.reset_at.timestamp())),
            "x-ratelimit-resource": resource,
        }


class Budgets:
    """Points used per token and resource ("graphql" or "core"), in hourly windows."""

    def __init__(self, clock: Callable[[], datetime], limits: dict[str, int]) -> None:
        self.clock = clock
        self.limits = limits  # token -> points per hour
        self._windows: dict[tuple[str, str], Window] = {}
        self._minute: dict[tuple[str, str], deque] = defaultdict(deque)
        self._active: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def window(self, token: str, resource: str) -> Window:
        now = self.clock()
        with self._lock:
            current = self._windows.get((token, resource))
            if current is None or now >= current.reset_at:
                current = Window(self.limits.get(token, 5000), 0, now + HOUR)
                self._windows[(token, resource)] = current
            return current

    def charge(self, token: str, resource: str, points: int) -> Window:
        window = self.window(token, resource)
        with self._lock:
            window.used += points
            self._minute[(token, resource)].append((self.clock(), points))
        return window

    def exhaust(self, token: str, resource: str) -> None:
        """Uses up the hour's budget (for tests of budget exhaustion)."""
        window = self.window(token, resource)
        window.used = window.limit

    def last_minute(self, token: str, resource: str) -> int:
        cutoff = self.clock() - MINUTE
        with self._lock:
            spent = self._minute[(token, resource)]
            while spent and spent[0][0] <= cutoff:
                spent.popleft()
            return sum(points for _, points in spent)

    def enter(self, token: str) -> bool:
        """Counts a request in flight; False if the token already has too many."""
        with self._lock:
            if self._active[token] >= CONCURRENT:
                return False
            self._active[token] += 1
            return True

    def leave(self, token: str) -> None:
        with self._lock:
            self._active[token] -= 1
