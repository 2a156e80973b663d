"""Rollout controls as events: the hybrid rollout's percentage, repositories always in
(allow) or always out (deny), and an emergency stop per lane, with their history. One
aggregate (a fixed id) in the job store's event log; the router and the dispatcher read
its state. A lane stopped automatically (its error rate crossed a threshold) says so."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from jobstore.errors import InvalidSpec
from jobstore.routing import LANES, RoutingSettings
from jobstore.spec import parse_repository

ROLLOUT_ID: UUID = uuid5(NAMESPACE_URL, "https://prcapture.invalid/rollout")


class Rollout(Aggregate):
    """What operators decided about the rollout, as a history of facts."""

    class Begun(Aggregate.Created):
        pass

    class PercentSet(Aggregate.Event):
        percent: float | None  # None: back to JOBSTORE_ROLLOUT_PERCENT
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.percent = self.percent

    class Listed(Aggregate.Event):
        repository: str
        listing: str  # allow, deny, or none (off both lists)
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.allow.discard(self.repository)
            aggregate.deny.discard(self.repository)
            if self.listing in ("allow", "deny"):
                getattr(aggregate, self.listing).add(self.repository)

    class LaneStopped(Aggregate.Event):
        lane: str
        reason: str
        automatic: bool

        def apply(self, aggregate: Any) -> None:
            aggregate.stopped[self.lane] = self.reason

    class LaneResumed(Aggregate.Event):
        lane: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.stopped.pop(self.lane, None)

    def __init__(self) -> None:
        self.percent: float | None = None  # None: JOBSTORE_ROLLOUT_PERCENT decides
        self.allow: set[str] = set()
        self.deny: set[str] = set()
        self.stopped: dict[str, str] = {}

    @classmethod
    def begin(cls, now: datetime) -> Rollout:
        return cls._create(cls.Begun, id=ROLLOUT_ID, timestamp=now)

    def set_percent(self, percent: float | None, reason: str, now: datetime) -> None:
        if percent is not None and not 0 <= percent <= 100:
            raise InvalidSpec("percent", f"must be 0..100, got {percent:g}")
        value = None if percent is None else float(percent)
        self.trigger_event(self.PercentSet, percent=value, reason=reason, timestamp=now)

    def set_listing(self, repository: str, listing: str, reason: str, now: datetime) -> None:
        if listing not in ("allow", "deny", "none"):
            raise InvalidSpec("listing", f"must be allow, deny or none, got {listing!r}")
        name = parse_repository(repository).lower()
        self.trigger_event(
            self.Listed, repository=name, listing=listing, reason=reason, timestamp=now
        )

    def stop(self, lane: str, reason: str, now: datetime, automatic: bool = False) -> None:
        _check_lane(lane)
        self.trigger_event(
            self.LaneStopped, lane=lane, reason=reason, automatic=automatic, timestamp=now
        )

    def resume(self, lane: str, reason: str, now: datetime) -> None:
        _check_lane(lane)
        self.trigger_event(self.LaneResumed, lane=lane, reason=reason, timestamp=now)

    def routing(self, config: RoutingSettings) -> RoutingSettings:
        """The router's configuration with these decisions applied."""
        return replace(
            config,
            rollout_percent=config.rollout_percent if self.percent is None else self.percent,
            allow=frozenset(self.allow),
            deny=frozenset(self.deny),
        )


REMOTE = ("inngest", "github_actions")  # the lanes an automatic rollback may stop


def rollbacks(
    errors: dict[str, tuple[int, int]],
    stopped: dict[str, str],
    threshold: float | None,
    minimum: int,
) -> list[tuple[str, str]]:
    """The remote lanes to stop now, and why: each whose share of failed attempts (of
    `errors`' (failed, ended) over the last hour, with at least `minimum` ended) is above
    `threshold`. A stopped lane's work falls back to the others (DESIGN §5)."""
    if threshold is None:
        return []
    stop = []
    for lane in REMOTE:
        failed, ended = errors.get(lane, (0, 0))
        if lane not in stopped and ended >= minimum and failed / ended > threshold:
            stop.append(
                (
                    lane,
                    f"automatic rollback: {failed} of {ended} attempts failed in the last "
                    f"hour (threshold {threshold:.0%})",
                )
            )
    return stop


def _check_lane(lane: str) -> None:
    if lane not in LANES:
        raise InvalidSpec("lane", f"must be one of {', '.join(LANES)}, got {lane!r}")
