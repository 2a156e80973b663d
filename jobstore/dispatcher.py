"""The dispatcher: hands routed jobs to their lanes, judges lane health, and falls back.

Routing is decided by the pure router (jobstore.routing); this module does the I/O around
it: it reads the lanes' recent dispatch outcomes, sends, records Dispatched or
DispatchFailed, and routes a job again when its lane is down, so no job is ever lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import httpx

from jobstore.domain import Job, Status
from jobstore.errors import InvalidTransition
from jobstore.heads import Dispatching, Waiting
from jobstore.lanes import Dispatch, DispatchError, Lane, dispatch
from jobstore.lanes.github_actions import ActionsLane
from jobstore.lanes.inngest import InngestLane
from jobstore.routing import (
    ACTIONS,
    INNGEST,
    LANES,
    LOCAL,
    MOVABLE,
    Route,
    RoutingSettings,
    decide,
    due_at,
    lane_down,
)
from jobstore.settings import Settings
from jobstore.spec import JobSpec
from jobstore.store import Enqueued, JobStore


@dataclass(frozen=True)
class Sent:
    """What happened to one job: handed to `lane` (ok), or left routed and why."""

    job_id: UUID
    lane: str | None
    ok: bool
    detail: str
    fallback_from: str | None = None
    full: bool = False  # its lane held all it may run at once: it waits, routed, its turn


Observe = Callable[[httpx.Headers], None]


def open_lanes(
    settings: Settings, client: httpx.Client, observe: Observe | None = None
) -> tuple[dict[str, Lane], dict[str, str]]:
    """The configured dispatching lanes, and for each unconfigured one why it is down.
    `observe` is shown the headers of every Actions answer (what the dispatch token has
    left of its budget)."""
    lanes: dict[str, Lane] = {}
    problems: dict[str, str] = {}
    conf = settings.lanes
    try:
        lanes[INNGEST] = InngestLane(
            client, conf.inngest_event_api, conf.inngest_event_key.reveal()
        )
    except DispatchError as exc:
        problems[INNGEST] = str(exc)
    try:
        lanes[ACTIONS] = ActionsLane(
            client,
            conf.github_api_url,
            conf.actions_repository,
            conf.workflow_for,
            ref=conf.actions_ref,
            token=conf.github_token.reveal() or "",
            observe=observe or (lambda headers: None),
        )
    except DispatchError as exc:
        problems[ACTIONS] = str(exc)
    return lanes, problems


STOPPED = "emergency stop: "
# What rides together in one Actions run: refreshes the router sent to Actions only for
# having no urgency (small, scheduled), whose work is seconds next to a runner's setup.
BATCHABLE = ("repository-refresh",)
BATCHED = "waits to ride a batch: the sweeper (or the planner's pass) sends it"


BATCHED_RULES = ("no-urgency", "crowded")  # scheduled work, by the table or overflowing


def batchable(job: Job | Waiting, settings: Settings) -> bool:
    """Whether `job` waits to be sent in a batch of small refreshes on Actions: scheduled
    work, or a part of a split refresh whose workflow has no matrix to run it."""
    scheduled = job.rule in BATCHED_RULES and job.parent_id is None
    part = job.rule == "parent" and job.parent_id is not None
    part = part and not settings.lanes.fans_out(job.job_type)
    return (
        settings.actions_batch > 1
        and job.lane == ACTIONS
        and job.job_type in BATCHABLE
        and (scheduled or part)
    )


# Seconds a batch's run is given beyond its lane's start deadline to do its riders.
RUN_MARGIN = 300.0


WAITING = "waiting for a local worker"  # how a stopped lane's reason starts in `down()`


@dataclass(frozen=True)
class Submitted:
    """A job request's outcome: the job (new, or the active one with the same dedupe key)
    and, when it was new, how dispatching it went."""

    enqueued: Enqueued
    job: Job
    sent: Sent | None


class Ask(NamedTuple):
    """A job asked for: its spec, a lane it must take (None: the routing table's choice)
    and why, for the audit trail."""

    spec: JobSpec
    lane: str | None = None
    reason: str | None = None
    movable: bool = False  # the lane is a default (the planner's), not a person's choice


@dataclass
class Dispatcher:
    store: JobStore
    lanes: Mapping[str, Lane]
    problems: Mapping[str, str] = field(default_factory=dict)
    capable: Callable[[str], Collection[str]] = lambda _type: LANES
    # Lanes that looked down and were tried once anyway since the last `down()` call.
    probed: set[str] = field(default_factory=set, init=False)

    @property
    def settings(self) -> Settings:
        return self.store.settings

    def routing(self) -> RoutingSettings:
        """The routing table's configuration with the operators' rollout decisions."""
        return self.store.rollout().routing(self.settings.routing)

    def down(self, now: datetime) -> dict[str, str]:
        """Lanes that are down now, and why: stopped by an operator (or automatically),
        unconfigured, or failing every recent dispatch."""
        health = self.settings.health
        self.probed.clear()
        down = dict(self.problems)
        down |= {lane: f"{STOPPED}{why}" for lane, why in self.store.rollout().stopped.items()}
        recent = self.store.recent_dispatches(health.window, health.failures, now)
        for lane, outcomes in recent.items():
            if lane not in down and lane_down(outcomes, health):
                down[lane] = f"its last {health.failures} dispatches failed"
        return down

    @classmethod
    def open(
        cls,
        store: JobStore,
        client: httpx.Client,
        capable: Callable[[str], Collection[str]] = lambda _type: LANES,
        observe: Observe | None = None,
    ) -> Dispatcher:
        """A dispatcher for the store's lane settings; unconfigured lanes count as down.
        `observe` sees the headers of every answer to a workflow dispatch."""
        lanes, problems = open_lanes(store.settings, client, observe)
        return cls(store, lanes, problems, capable)

    def submit(
        self, spec: JobSpec, now: datetime, lane: str | None = None, reason: str | None = None
    ) -> Submitted:
        """The whole enqueue flow: route with current lane health (`lane` forces one, for
        `reason` if given), enqueue and route in one transaction, then dispatch a new job."""
        return self.submit_many([Ask(spec, lane, reason)], now)[0]

    def submit_many(self, asks: Sequence[Ask], now: datetime) -> list[Submitted]:
        """`submit` for many jobs (a planner pass's bootstraps): routed with one look at
        lane health, enqueued in one transaction, then each new one dispatched. A lane
        found full is not asked again within the call: its jobs stay routed, and the
        sweeper sends them when a place frees (as `send` does for one)."""
        if not asks:
            return []
        for ask in asks:
            ask.spec.check_not_future(now)
        down = self.down(now)
        routes = {id(ask.spec): self._route(ask, now, down, {}) for ask in asks}
        if any(
            r.lane == INNGEST and a.spec.trigger in MOVABLE for a, r in self._pairs(asks, routes)
        ):
            crowded = self.crowded()  # only read when a job could move off a crowded Inngest
            if crowded:
                routes = {id(ask.spec): self._route(ask, now, down, crowded) for ask in asks}
        enqueued = self.store.enqueue_many(
            [ask.spec for ask in asks], now, lambda spec: routes[id(spec)]
        )
        full: dict[str, Sent] = {}
        submitted = []
        for ask, done in zip(asks, enqueued, strict=True):
            submitted.append(self._dispatch_new(done, routes[id(ask.spec)], now, down, full))
        return submitted

    @staticmethod
    def _pairs(asks: Sequence[Ask], routes: Mapping[int, Route]) -> list[tuple[Ask, Route]]:
        return [(ask, routes[id(ask.spec)]) for ask in asks]

    def crowded(self) -> dict[str, str]:
        """Inngest, if more jobs wait for it than JOBSTORE_CROWDED_AFTER per place: counted
        up to that many from the queue index, so the look costs the same however long the
        queue is."""
        capacity = self.settings.capacity(INNGEST)
        after = self.settings.routing.crowded_after
        if capacity is None or after <= 0:
            return {}
        limit = int(capacity * after)
        if self.store.heads.waiting_count(INNGEST, limit + 1) <= limit:
            return {}
        return {INNGEST: f"over {limit} jobs waiting for its {capacity} places"}

    def _route(
        self, ask: Ask, now: datetime, down: Mapping[str, str], crowded: Mapping[str, str]
    ) -> Route:
        spec, lane, reason, movable = ask
        route = decide(
            spec,
            now,
            self.routing(),
            lane=lane,
            capable=self.capable(spec.job_type),
            down=set(down),
            crowded=crowded,
            movable=movable,
        )
        if lane is not None and reason and route.rule == "explicit":
            route = replace(route, reason=reason[:500])
        if route.fallback_from in down:  # say why the first choice was not taken
            why = f"{route.reason} ({route.fallback_from}: {down[route.fallback_from]})"
            route = replace(route, reason=why[:500])
        return route

    def _dispatch_new(
        self,
        enqueued: Enqueued,
        route: Route,
        now: datetime,
        down: dict[str, str],
        full: dict[str, Sent],
    ) -> Submitted:
        if enqueued.created and enqueued.job is not None and route.lane == LOCAL:
            # Nothing to send: a local worker takes it (notified as it was saved).
            fallback = route.fallback_from
            return Submitted(
                enqueued, enqueued.job, Sent(enqueued.job_id, LOCAL, True, WAITING, fallback)
            )
        new = enqueued.job if enqueued.created else None
        if new is not None and batchable(new, self.settings):
            return Submitted(enqueued, new, Sent(enqueued.job_id, ACTIONS, False, BATCHED))
        if new is None:
            return Submitted(enqueued, self.store.get(enqueued.job_id), None)
        if route.lane in full:  # found full a moment ago, in this call
            return Submitted(enqueued, new, replace(full[route.lane], job_id=new.id))
        sent = self.send(enqueued.job_id, now, down)
        if sent.full:
            full[sent.lane or ""] = sent
        return Submitted(enqueued, self.store.get(enqueued.job_id), sent)

    def send_batches(
        self, jobs: list[Job], now: datetime, down: dict[str, str] | None = None
    ) -> list[Sent]:
        """Sends batchable jobs (see `batchable`) in batches of JOBSTORE_ACTIONS_BATCH, in
        the order given (their fair turns): each batch one run, within the lane's
        capacity. A batch not full yet waits until its first job has waited
        JOBSTORE_ACTIONS_BATCH_WAIT seconds (no-urgency work gathers riders meanwhile),
        or until one of its jobs' `due` (when its data would pass its freshness target)
        is nearer than the lane's start deadline plus a run's setup, or it holds a part of
        a split refresh (whose parent waits for it).
        Stops at a full lane; what is left waits, routed."""
        down = self.down(now) if down is None else down
        size, linger = self.settings.actions_batch, self.settings.actions_batch_wait
        margin = timedelta(seconds=self.settings.start_deadline(ACTIONS) + RUN_MARGIN)
        sent: list[Sent] = []
        for start in range(0, len(jobs), size):
            chunk = jobs[start : start + size]
            oldest = min(job.created_on for job in chunk)
            pressed = any(due < now + margin for job in chunk if (due := due_at(job.params)))
            pressed = pressed or any(job.parent_id for job in chunk)  # its parent waits
            if len(chunk) < size and (now - oldest).total_seconds() < linger and not pressed:
                break  # the last, partial batch gathers more riders
            batch = self.send_batch([job.id for job in chunk], now, down)
            sent += batch
            if any(s.full for s in batch) or ACTIONS in down:
                break
        return sent

    def send_batch(self, job_ids: list[UUID], now: datetime, down: dict[str, str]) -> list[Sent]:
        """One run for all of `job_ids`: the first is sent as the run's job (as `send`
        would, falling back if the lane is down), the others ride it: recorded dispatched
        to the same run, each its own job. Any that moved on meanwhile is left out."""
        if not job_ids:
            return []
        leader, members = job_ids[0], job_ids[1:]
        first = self.send(leader, now, down)
        if not first.ok or first.lane != ACTIONS:
            return [first]  # the others wait for the next batch
        led = self.store.get(leader)
        ref = f"{led.ref} (batch of {leader})" if led.ref else f"batch of {leader}"
        sent = [first]
        for order, member in enumerate(members):
            with self.store.heads.dispatching(member) as mine:
                job = self.store.get(member)
                if not mine or job.status is not Status.ROUTED or job.lane != ACTIONS:
                    continue
                try:
                    self.store.dispatched(member, ref, now)
                except InvalidTransition:
                    continue
                # `at` keeps their turns: the run does them in this order
                at = now + timedelta(microseconds=order)
                self.store.heads.batched(member, job.attempt, leader, led.attempt, at)
                sent.append(Sent(member, ACTIONS, True, ref))
        return sent

    def reroute(
        self, job: Job, now: datetime, down: Mapping[str, str], always: bool = False
    ) -> Job:
        """Routes `job` again with `down` lanes avoided; returns it (unchanged if the lane
        stays the same, unless `always`: a retry is routed again even to the same lane)."""
        route = decide(
            job.spec(),
            now,
            self.routing(),
            lane=job.lane if job.rule == "explicit" else None,
            capable=self.capable(job.job_type),
            down=set(down),
        )
        moved = route.lane != job.lane
        if not moved and not always:
            return job
        reason = route.reason
        if moved and job.lane in down:
            reason += f" ({job.lane}: {down[job.lane]})"
        return self.store.route(
            job.id,
            replace(
                route,
                reason=reason[:500],
                fallback_from=(route.fallback_from or job.lane) if moved else None,
            ),
            now,
        )

    def send(self, job_id: UUID | str, now: datetime, down: dict[str, str] | None = None) -> Sent:
        """Dispatches a routed job; on failure records it and falls back as DESIGN §5 says.

        `down` is updated in place with lanes found failing, so a sweep over many jobs
        stops sending to a lane the moment it fails. One dispatcher at a time sends a
        given job (a producer and a sweeper may both try): the other leaves it alone.
        """
        with self.store.heads.dispatching(job_id) as mine:
            if not mine:
                job = self.store.get(job_id)
                return Sent(job.id, job.lane, False, "being dispatched by another process")
            return self._send(job_id, now, self.down(now) if down is None else down, mine)

    def _send(
        self, job_id: UUID | str, now: datetime, down: dict[str, str], mine: Dispatching
    ) -> Sent:
        job = self.store.get(job_id)
        first_lane = job.lane
        tries: Counter[str] = Counter()
        for _ in range(3 * (self.settings.health.lane_tries + 1)):  # at most 3 lanes
            if job.status is not Status.ROUTED:
                return Sent(job.id, job.lane, job.status is Status.DISPATCHED, job.status.value)
            lane_name = job.lane or LOCAL
            if lane_name == LOCAL:
                fallback = first_lane if first_lane != LOCAL else None
                return Sent(job.id, LOCAL, True, WAITING, fallback)
            tried_enough = job.lane_failures >= self.settings.health.lane_tries
            probing = self._probe(lane_name, down)
            if (lane_name in down and not probing) or tried_enough:
                why = down.get(lane_name, f"{job.lane_failures} dispatches failed")
                moved = self.reroute(job, now, {**down, lane_name: why})
                if moved.lane != job.lane:
                    job = moved
                    continue
                exhausted = tries[lane_name] >= self.settings.health.lane_tries
                if (lane_name in down and not probing) or exhausted:
                    state = "is misconfigured" if why.startswith("configuration") else "down"
                    detail = f"{lane_name} {state} ({why}): stays routed, dispatched again later"
                    return Sent(job.id, lane_name, False, detail)
            lane = self.lanes.get(lane_name)
            if lane is None:
                down[lane_name] = "lane not configured"
                continue
            result = self._within_capacity(job, lane, now, mine)
            if result is None:
                held = self.settings.capacity(lane_name)
                detail = (
                    f"{lane_name} full ({held} of {held} running or about to): stays routed, "
                    "dispatched when one ends"
                )
                return Sent(job.id, lane_name, False, detail, full=True)
            tries[lane_name] += 1
            if result.ok:
                down.pop(lane_name, None)  # a probe got through: the lane is back
                fallback = first_lane if first_lane != lane_name else None
                return Sent(job.id, lane_name, True, result.detail, fallback)
            job = self.store.get(job.id)
            if result.misconfigured:  # trying again cannot help: fall back, say what to fix
                down[lane_name] = result.detail
                self.probed.add(lane_name)
                continue
            health = self.settings.health
            if tries[lane_name] >= health.lane_tries or lane_down(
                self._recent(lane_name, now), health
            ):
                down[lane_name] = result.detail  # for the rest of this call (and sweep pass)
        return Sent(job.id, job.lane, False, f"not dispatched: {job.error}")

    def _within_capacity(
        self, job: Job, lane: Lane, now: datetime, mine: Dispatching
    ) -> Dispatch | None:
        """Dispatches `job` if `lane` holds less than its capacity (counted and sent under
        the lane's lock, so dispatchers in other processes wait their turn); None if full.
        A job is only sent where it can start, so its start deadline measures the lane,
        not the queue."""
        capacity = self.settings.capacity(lane.name)
        if capacity is None:
            return dispatch(self.store, job.id, lane, now)
        if mine.held(lane.name) >= capacity:
            return None
        return dispatch(self.store, job.id, lane, now)

    def _probe(self, lane: str, down: Mapping[str, str]) -> bool:
        """One dispatch per pass to a lane that looks down from its recent failures (not
        one that is unconfigured), so a recovered lane is noticed at the next sweep."""
        if lane not in down or lane in self.problems or lane in self.probed:
            return False
        if down[lane].startswith(STOPPED):  # an operator's stop is not probed
            return False
        self.probed.add(lane)
        return True

    def _recent(self, lane: str | None, now: datetime) -> list[bool]:
        health = self.settings.health
        since = now - timedelta(seconds=health.window)
        return self.store.heads.recent_dispatches(since, health.failures).get(lane or "", [])
