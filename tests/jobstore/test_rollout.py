"""Rollout controls as events: percentage, allow and deny lists, an emergency stop per
lane (nothing dispatched to it, its work falls back), and the automatic rollback rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devtools.sandbox import Sandbox, World
from jobstore.dispatcher import Dispatcher, open_lanes
from jobstore.errors import ConfigError, InvalidSpec
from jobstore.rollout import rollbacks
from jobstore.routing import LANES, RoutingSettings, decide
from jobstore.settings import load
from jobstore.spec import JobSpec
from tests.jobstore.test_dispatcher import LANE_SETTINGS

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
RECENT = JobSpec.create("pr-reviews", "acme/widgets", days=1)


@pytest.fixture
def sandbox():
    sandbox = Sandbox(World(), clock=lambda: T0)
    inputs = {"job_id": {"required": True}, "attempt": {"required": True}}
    sandbox.register_workflow("acme/ops", "capture-job.yml", inputs)
    return sandbox


@pytest.fixture
def dispatcher(store, sandbox):
    store.settings = replace(store.settings, lanes=LANE_SETTINGS)
    with httpx.Client(transport=sandbox.transport()) as client:
        opened, problems = open_lanes(store.settings, client)
        yield Dispatcher(store, opened, problems)


def test_no_decisions_yet_leave_the_environment_in_charge(store):
    rollout = store.rollout()
    assert (rollout.percent, rollout.allow, rollout.deny, rollout.stopped) == (
        None,
        set(),
        set(),
        {},
    )
    config = rollout.routing(RoutingSettings(rollout_percent=25))
    assert config.rollout_percent == 25
    assert store.rollout_history() == []


def test_every_change_is_an_event_with_its_reason(store):
    store.change_rollout(lambda r: r.set_percent(10, "canary", T0))
    store.change_rollout(lambda r: r.set_listing("Acme/Widgets", "deny", "too big", T0))
    store.change_rollout(lambda r: r.stop("inngest", "incident 42", T0))
    store.change_rollout(lambda r: r.resume("inngest", "fixed", T0 + timedelta(hours=1)))
    rollout = store.rollout()
    assert (rollout.percent, rollout.deny, rollout.stopped) == (10.0, {"acme/widgets"}, {})
    history = [(type(e).__name__, getattr(e, "reason", None)) for e in store.rollout_history()]
    assert history[1:] == [
        ("PercentSet", "canary"),
        ("Listed", "too big"),
        ("LaneStopped", "incident 42"),
        ("LaneResumed", "fixed"),
    ]


def test_bad_decisions_are_refused_and_nothing_is_written(store):
    with pytest.raises(InvalidSpec, match="percent"):
        store.change_rollout(lambda r: r.set_percent(101, "x", T0))
    with pytest.raises(InvalidSpec, match="lane"):
        store.change_rollout(lambda r: r.stop("gitlab", "x", T0))
    with pytest.raises(InvalidSpec, match="repository"):
        store.change_rollout(lambda r: r.set_listing("no-slash", "allow", "x", T0))
    assert store.rollout_history() == []


def test_allow_and_deny_lists_override_the_percentage():
    none = RoutingSettings(rollout_percent=0, allow=frozenset({"acme/widgets"}))
    assert decide(RECENT, T0, none).lane == "inngest"
    everyone = RoutingSettings(rollout_percent=100, deny=frozenset({"acme/widgets"}))
    route = decide(RECENT, T0, everyone)
    assert (route.lane, route.reason) == ("github_actions", "denied in the rollout")


def test_the_router_follows_the_recorded_percentage(store, dispatcher):
    store.change_rollout(lambda r: r.set_percent(0, "roll back", T0))
    job = dispatcher.submit(RECENT, T0).job
    assert (job.lane, job.rule) == ("github_actions", "rollout")


def test_a_stopped_lane_gets_nothing_and_its_work_falls_back(store, dispatcher, sandbox):
    waiting = store.enqueue(RECENT, T0, route=decide(RECENT, T0, RoutingSettings())).job_id
    store.change_rollout(lambda r: r.stop("inngest", "incident 42", T0))
    new = dispatcher.submit(JobSpec.create("pr-reviews", "acme/other", days=1), T0).job
    assert new.lane == "github_actions"
    assert "inngest" in (new.reason or "") or new.rule == "fallback"
    sent = dispatcher.send(waiting, T0)  # routed to Inngest before the stop
    assert (sent.ok, sent.lane, sent.fallback_from) == (True, "github_actions", "inngest")
    assert "emergency stop: incident 42" in (store.get(waiting).reason or "")
    assert sandbox.inngest.events == []  # not even a probe
    store.change_rollout(lambda r: r.resume("inngest", "fixed", T0))
    again = dispatcher.submit(JobSpec.create("pr-reviews", "acme/third", days=1), T0).job
    assert again.lane == "inngest"


def test_an_explicit_lane_that_is_stopped_keeps_its_job_routed(store, dispatcher, sandbox):
    store.change_rollout(lambda r: r.stop("inngest", "incident", T0))
    submitted = dispatcher.submit(RECENT, T0, lane="inngest")
    assert submitted.job.status.value == "routed"
    assert not submitted.sent.ok
    assert "emergency stop" in submitted.sent.detail
    assert sandbox.inngest.events == []


def test_automatic_rollback_needs_enough_attempts_and_a_rate_over_the_threshold():
    errors = {"inngest": (6, 10), "github_actions": (9, 9), "local": (50, 50)}
    assert rollbacks(errors, {}, None, 10) == []  # off
    stop = rollbacks(errors, {}, 0.5, 10)
    assert [lane for lane, _ in stop] == ["inngest"]  # actions: 9 < 10 attempts; never local
    assert "6 of 10 attempts failed" in stop[0][1]
    assert "50%" in stop[0][1]
    assert rollbacks(errors, {"inngest": "already"}, 0.5, 10) == []
    assert rollbacks({"inngest": (5, 10)}, {}, 0.5, 10) == []  # at, not over


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBSTORE_AUTO_ROLLBACK": "2"}, "fraction between 0 and 1"),
        ({"JOBSTORE_AUTO_ROLLBACK": "half"}, "must be a number"),
        ({"JOBSTORE_AUTO_ROLLBACK_MIN": "0"}, "at least 1"),
    ],
)
def test_bad_rollback_settings_are_configuration_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env)


def test_rollback_settings_load():
    settings = load({"JOBSTORE_AUTO_ROLLBACK": "0.3", "JOBSTORE_AUTO_ROLLBACK_MIN": "20"})
    assert (settings.auto_rollback, settings.auto_rollback_min) == (0.3, 20)
    assert load({}).auto_rollback is None
    assert set(LANES) >= {"inngest", "github_actions"}
