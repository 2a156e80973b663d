"""What the sweeper does after each pass for operators without Prometheus: an automatic
rollback of a remote lane failing too often (when JOBSTORE_AUTO_ROLLBACK is set), the
alert rules judged on the same snapshot the metrics show, and each alert's start and end
delivered to the webhook (CAPTURE_ALERT_WEBHOOK) once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from capture.freshness.registry import Registry
from capture.github.ledger import PostgresBudgets
from capture.ops import alerts
from capture.ops.health import snapshot
from jobstore import STOPPED, Dispatcher, Rollout, Secret, rollbacks


@dataclass
class Oversight:
    stopped: list[tuple[str, str]] = field(default_factory=list)  # (lane, why), this pass
    changes: list[alerts.Change] = field(default_factory=list)
    notified: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "rolled_back": {lane: why for lane, why in self.stopped},
            "alerts": [
                {"alert": c.rule, "key": c.key, "status": c.status, "detail": c.detail}
                for c in self.changes
            ],
            "notified": self.notified,
        }

    def lines(self) -> list[str]:
        out = [f"lane {lane} stopped: {why}" for lane, why in self.stopped]
        out += [f"alert {c.rule} {c.status}: {c.detail}" for c in self.changes]
        return out


def oversee(
    dispatcher: Dispatcher,
    budgets: PostgresBudgets,
    registry: Registry,
    now: datetime,
    webhook: Secret | None,
    client: httpx.Client,
) -> Oversight:
    """One look at the operating picture: roll back, then judge and notify."""
    db = dispatcher.store.database("oversee")
    health = snapshot(db, dispatcher, budgets, registry, now)
    settings = dispatcher.settings
    store = dispatcher.store
    result = Oversight()
    rollout = store.rollout()
    result.stopped = rollbacks(
        health.errors, rollout.stopped, settings.auto_rollback, settings.auto_rollback_min
    )
    if result.stopped:

        def stop(r: Rollout) -> None:
            for lane, why in result.stopped:
                if lane not in r.stopped:
                    r.stop(lane, why, now, automatic=True)

        store.change_rollout(stop)
        for lane, why in result.stopped:
            health.down[lane] = f"{STOPPED}{why}"
    registry.sample(len(health.breached_names), now)  # the dashboard's fleet over time
    state = alerts.AlertState(dispatcher.store.database("alerts"))
    result.changes = state.update(alerts.firing(health), now)
    if webhook is not None:
        result.notified = state.notify(webhook.reveal(), now, client)
    return result
