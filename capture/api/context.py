"""What every request of the API uses: the job store and the components lent its
connections (registry, budget ledger, alerts), the lanes' HTTP client, the clock, and the
hub of event streams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from capture.api.stream import Hub
from capture.freshness.registry import Registry
from capture.freshness.rules import FreshnessSettings
from capture.github.ledger import PostgresBudgets, dispatch_observer
from capture.jobtypes import capable
from capture.ops.alerts import AlertState
from jobstore import Database, Dispatcher, JobStore

PING_TIMEOUT = 2.0  # seconds: a request meets an outage as a 503 this fast


@dataclass
class Context:
    """Made once per server; every part is safe to use from any server thread."""

    store: JobStore
    freshness: FreshnessSettings
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Event streams open at once (each costs the server a socket and a little memory).
    max_streams: int = 10_000
    db: Database = field(init=False)
    registry: Registry = field(init=False)
    budgets: PostgresBudgets = field(init=False)
    alerts: AlertState = field(init=False)
    hub: Hub = field(init=False)

    def __post_init__(self) -> None:
        self.db = self.store.database("api")
        self.registry = Registry(self.store.database("registry"))
        self.budgets = PostgresBudgets(self.store.database("budgets"))
        self.alerts = AlertState(self.store.database("alerts"))
        # One connection of its own feeds every stream, however many are open.
        self.hub = Hub(self.store, Database(self.store.url, "streams", size=1), self.max_streams)

    def ping(self) -> None:
        """Raises DatabaseUnavailable unless the database answers within PING_TIMEOUT, so
        a request meets an outage as a quick 503, not after the store's own retries."""
        self.db.ping(PING_TIMEOUT)

    def dispatcher(self) -> Dispatcher:
        """A dispatcher for one request (lane health is judged afresh each time)."""
        token = self.store.settings.lanes.github_token.reveal()
        return Dispatcher.open(
            self.store, self.client, capable, dispatch_observer(self.budgets, token)
        )

    def close(self) -> None:
        self.hub.stop()
        self.client.close()
