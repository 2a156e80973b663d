"""Dispatch with lane health and fallback, and the sweeper, against the sandbox's lanes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest

from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Sandbox, World
from jobstore.dispatcher import BATCHED, Ask, Dispatcher, open_lanes
from jobstore.routing import LANES, Route
from jobstore.secret import Secret
from jobstore.settings import LaneSettings
from jobstore.spec import JobSpec
from jobstore.sweeper import sweep

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
INPUTS = {"job_id": {"required": True}, "attempt": {"required": True}}
RUN_NAME = "capture ${{ inputs.job_id }} #${{ inputs.attempt }}"


@pytest.fixture
def sandbox():
    sandbox = Sandbox(World(), clock=lambda: T0)
    for file in ("capture-job.yml", "historical-sync.yml"):
        sandbox.register_workflow("acme/ops", file, INPUTS, run_name=RUN_NAME)
    return sandbox


LANE_SETTINGS = LaneSettings(
    inngest_event_key=Secret(DEFAULT_EVENT_KEY),
    inngest_event_api="http://sandbox.invalid",
    github_token=Secret(DEFAULT_TOKEN),
    github_api_url="http://sandbox.invalid",
    actions_repository="acme/ops",
)


@pytest.fixture
def make(store, sandbox):
    client = httpx.Client(transport=sandbox.transport())

    def build(capable=LANES, **lane_settings) -> Dispatcher:
        store.settings = replace(store.settings, lanes=replace(LANE_SETTINGS, **lane_settings))
        lanes, problems = open_lanes(store.settings, client)
        return Dispatcher(store, lanes, problems, lambda _type: capable)

    yield build
    client.close()


def routed(
    store, lane: str, repo: str = "acme/widgets", rule: str = "recent", job_type="pr-reviews"
):
    """A job routed to `lane` as the router would: a recent window for Inngest, a window
    two years back for Actions."""
    if lane == "inngest":
        spec = JobSpec.create(job_type, repo, days=1)
    else:
        spec = JobSpec.create(
            job_type, repo, since=T0 - timedelta(days=730), until=T0 - timedelta(days=30)
        )
    return store.enqueue(spec, T0, route=Route(lane, rule, "test")).job_id


def events(store, job_id) -> list[str]:
    return [type(e).__name__ for e in store.history(job_id)]


def test_both_lanes_take_jobs_and_record_their_refs(store, sandbox, make):
    dispatcher = make()
    to_inngest, to_actions = routed(store, "inngest"), routed(store, "github_actions")
    assert dispatcher.send(to_inngest, T0).ok
    assert dispatcher.send(to_actions, T0).ok
    (event,) = sandbox.inngest.events
    assert event["id"] == f"{to_inngest}-1"
    (run,) = sandbox.actions.runs.values()
    assert run.display_title == f"capture {to_actions} #1"
    assert store.get(to_actions).ref == f"{run.id} {run.html_url}"


def test_the_dispatch_tokens_budget_is_recorded_in_the_shared_ledger(store, sandbox):
    """The workflow token has 1,000 requests an hour: dispatches spend it, and the ledger
    says how much is left (named by the token's fingerprint, never the token)."""
    from capture.github.budgets import MemoryBudgets
    from capture.github.ledger import dispatch_observer

    budgets = MemoryBudgets()
    store.settings = replace(store.settings, lanes=LANE_SETTINGS)
    with httpx.Client(transport=sandbox.transport()) as client:
        observe = dispatch_observer(budgets, DEFAULT_TOKEN)
        dispatcher = Dispatcher.open(store, client, observe=observe)
        assert dispatcher.send(routed(store, "github_actions"), T0).ok
    (row,) = budgets.snapshot(T0)
    assert row["credential"].startswith("dispatch:sha256:")
    assert DEFAULT_TOKEN not in str(row)
    assert (row["resource"], row["remaining"]) == ("core", row["limit"] - 1)


def test_historical_sync_dispatches_its_own_workflow(store, sandbox, make):
    spec = JobSpec.create("historical-sync", "acme/widgets", days=700, trigger="backfill")
    job_id = store.enqueue(spec, T0, route=Route("github_actions", "x", "y")).job_id
    assert make().send(job_id, T0).ok
    (run,) = sandbox.actions.runs.values()
    assert run.workflow == "historical-sync.yml"


def test_inngest_down_falls_back_to_actions_with_high_priority(store, sandbox, make):
    sandbox.faults.add("inngest:down")
    job_id = routed(store, "inngest")
    sent = make().send(job_id, T0)
    assert (sent.ok, sent.lane, sent.fallback_from) == (True, "github_actions", "inngest")
    job = store.get(job_id)
    assert (job.status.value, job.priority, job.rule) == ("dispatched", "high", "fallback")
    # Tried twice (JOBSTORE_DISPATCH_TRIES), each failure recorded, then routed again.
    assert events(store, job_id) == [
        "Queued",
        "Routed",
        "DispatchFailed",
        "DispatchFailed",
        "Routed",
        "Dispatched",
    ]
    assert "HTTP 503" in store.history(job_id)[2].error


def test_actions_down_keeps_the_job_routed_until_the_sweeper_succeeds(store, sandbox, make):
    sandbox.faults.add("dispatch:503:2")
    job_id = routed(store, "github_actions", rule="historical")
    sent = make().send(job_id, T0)
    assert not sent.ok
    assert "stays routed" in sent.detail
    assert store.get(job_id).status.value == "routed"
    report = sweep(make(), T0 + timedelta(minutes=1))  # the faults are used up: Actions is back
    assert [s.job_id for s in report.sent if s.ok] == [job_id]
    assert store.get(job_id).lane == "github_actions"
    assert events(store, job_id)[-1] == "Dispatched"


def test_a_refused_event_key_is_a_configuration_error_tried_once(store, sandbox, make):
    job_id = routed(store, "inngest")
    sent = make(inngest_event_key=Secret("wrong-key")).send(job_id, T0)
    assert (sent.ok, sent.lane, sent.fallback_from) == (True, "github_actions", "inngest")
    (failed,) = [e for e in store.history(job_id) if type(e).__name__ == "DispatchFailed"]
    assert failed.error.startswith("configuration: INNGEST_EVENT_KEY was refused")
    assert "wrong-key" not in failed.error
    assert "configuration: INNGEST_EVENT_KEY" in store.get(job_id).reason


def test_a_missing_workflow_says_what_to_check_not_that_the_lane_is_down(store, make):
    job_id = routed(store, "github_actions", rule="historical")
    sent = make(actions_workflow="nope.yml").send(job_id, T0)
    assert not sent.ok
    assert sent.detail.startswith("github_actions is misconfigured (configuration: workflow")
    assert "CAPTURE_ACTIONS_REPOSITORY" in sent.detail
    assert events(store, job_id).count("DispatchFailed") == 1  # not retried in vain


def test_both_lanes_down_run_locally(store, sandbox, make):
    sandbox.faults.add("inngest:down", "dispatch:down")
    job_id = routed(store, "inngest")
    sent = make().send(job_id, T0)
    assert (sent.lane, sent.ok) == ("local", True)
    assert store.get(job_id).status.value == "routed"  # a local worker takes it from here


def test_an_unconfigured_lane_is_down_with_its_reason(store, sandbox, make):
    dispatcher = make(inngest_event_key=Secret(""))
    assert "INNGEST_EVENT_KEY is not set" in dispatcher.down(T0)["inngest"]
    job_id = routed(store, "inngest")
    sent = dispatcher.send(job_id, T0)
    assert sent.lane == "github_actions"
    assert sent.ok
    assert "INNGEST_EVENT_KEY is not set" in store.get(job_id).reason
    assert sandbox.inngest.events == []  # never a silent no-op: nothing was sent anywhere else


def test_recent_failures_mark_a_lane_down_and_it_recovers_after_the_window(store, sandbox, make):
    sandbox.faults.add("inngest:down:3")
    dispatcher = make()
    for n in range(3):
        spec = JobSpec.create("pr-reviews", f"acme/r{n}", days=1)
        job_id = store.enqueue(spec, T0, route=Route("inngest", "recent", "t")).job_id
        store.dispatch_failed(job_id, "HTTP 503", T0)
    assert "inngest" in dispatcher.down(T0)
    later = T0 + timedelta(seconds=store.settings.health.window + 1)
    assert "inngest" not in dispatcher.down(later)


def test_a_job_type_never_falls_back_to_a_lane_that_cannot_run_it(store, sandbox, make):
    sandbox.faults.add("inngest:down")
    job_id = routed(store, "inngest")
    sent = make(capable=("inngest", "local")).send(job_id, T0)
    assert sent.lane == "local"
    assert sandbox.actions.runs == {}


def test_sweeper_redispatches_a_job_accepted_but_never_started(store, sandbox, make):
    dispatcher = make()
    job_id = routed(store, "inngest")
    assert dispatcher.send(job_id, T0).ok
    deadline = store.settings.start_deadline("inngest")
    report = sweep(dispatcher, T0 + timedelta(seconds=deadline - 1))
    assert report.undelivered == []
    report = sweep(dispatcher, T0 + timedelta(seconds=deadline + 1))
    assert report.undelivered == [job_id]
    assert [s.job_id for s in report.sent if s.ok] == [job_id]
    first, second = sandbox.inngest.events
    assert second["id"] != first["id"]  # a new event id, or Inngest would drop it as a duplicate
    assert second["data"]["job_id"] == str(job_id)
    # Never started again: the second failure sends it to the fallback lane.
    later = T0 + timedelta(seconds=2 * deadline + 5)
    sweep(dispatcher, later)
    job = store.get(job_id)
    assert (job.lane, job.status.value, job.priority) == ("github_actions", "dispatched", "high")
    assert "not started within" in store.history(job_id)[-3].error


def test_sweeper_fails_stale_jobs_and_routes_due_retries_again(store, sandbox, make):
    dispatcher = make()
    job_id = routed(store, "inngest")
    store.claim(job_id, "w1", T0, lane="inngest")
    lease = store.settings.lease("inngest")
    report = sweep(dispatcher, T0 + timedelta(seconds=lease + 1))
    assert report.stale == [job_id]
    job = store.get(job_id)
    assert job.status.value == "retry_scheduled"
    assert job.attempt == 2
    report = sweep(dispatcher, job.not_before + timedelta(seconds=1))
    assert report.retried == [job_id]
    job = store.get(job_id)
    assert (job.status.value, job.attempt) == ("dispatched", 2)
    assert sandbox.inngest.events[-1]["id"] == f"{job_id}-2"


def test_a_claim_racing_the_dispatchers_own_write_still_wins(store, monkeypatch):
    """An executor can start a job before the dispatcher records Dispatched; the claim's
    conflict with that write must not lose the job (it would sit dispatched, never run)."""
    job_id = routed(store, "inngest")
    original, raced = store.get, []

    def read_then_dispatch(job):
        loaded = original(job)
        if not raced:  # the dispatcher's write lands between the claim's read and save
            raced.append(True)
            store.dispatched(job_id, "01EVENT", T0)
        return loaded

    monkeypatch.setattr(store, "get", read_then_dispatch)
    claim = store.claim(job_id, "inngest-worker", T0, attempt=1, lane="inngest")
    monkeypatch.undo()
    assert claim.won, claim.reason
    assert events(store, job_id) == ["Queued", "Routed", "Dispatched", "Started"]


def test_a_rival_claim_still_loses_cleanly(store, monkeypatch):
    job_id = routed(store, "inngest")
    original, raced = store.get, []

    def read_then_rival(job):
        loaded = original(job)
        if not raced:
            raced.append(True)
            store.claim(job_id, "rival", T0)
        return loaded

    monkeypatch.setattr(store, "get", read_then_rival)
    claim = store.claim(job_id, "late", T0)
    monkeypatch.undo()
    assert not claim.won
    assert claim.reason == "already running by rival"


def test_children_an_actions_parent_planned_are_left_to_its_matrix(store, sandbox, make):
    spec = JobSpec.create("historical-sync", "acme/widgets", pr_numbers=[1], parent_id=uuid4())
    child = store.enqueue(spec, T0, route=Route("github_actions", "parent", "p")).job_id
    dispatcher = make()
    assert sweep(dispatcher, T0 + timedelta(seconds=5)).sent == []
    assert store.get(child).status.value == "routed"
    deadline = store.settings.start_deadline("github_actions")
    report = sweep(dispatcher, T0 + timedelta(seconds=deadline + 1))  # the run never took it
    assert [s.job_id for s in report.sent if s.ok] == [child]


def test_the_sweeper_tells_children_left_to_a_matrix_from_their_heads(
    store, sandbox, make, monkeypatch
):
    # a monorepo's backfill keeps hundreds of children waiting for its matrix: a pass
    # does not read their events every 30 s to learn that it leaves them alone
    parent = uuid4()
    specs = [
        JobSpec.create("historical-sync", "acme/mono", pr_numbers=[i], parent_id=parent)
        for i in range(1, 41)
    ]
    route = Route("github_actions", "parent", "part of a backfill")
    children = [e.job_id for e in store.enqueue_many(specs, T0, route)]
    dispatcher = make()
    read: list = []
    original = store.get

    def counted(job_id, *args, **kwargs):
        read.append(job_id)
        return original(job_id, *args, **kwargs)

    monkeypatch.setattr(store, "get", counted)
    assert sweep(dispatcher, T0 + timedelta(seconds=5)).sent == []
    assert not set(read) & set(children)
    # a head written before schema/030 has no rule: that job is read, and still left
    with store.database("t").connection() as conn:
        conn.execute("UPDATE job_heads SET rule = NULL WHERE job_id = %s", (children[0],))
    assert sweep(dispatcher, T0 + timedelta(seconds=10)).sent == []
    assert set(read) & set(children) == {children[0]}


def test_a_producer_and_a_sweeper_never_dispatch_the_same_job_twice(store, sandbox, make):
    job_id = routed(store, "github_actions", rule="historical")
    dispatcher = make()
    with store.heads.dispatching(job_id) as mine:  # the producer is sending it right now
        assert mine
        sent = sweep(dispatcher, T0).sent
        assert [(s.ok, s.detail) for s in sent] == [(False, "being dispatched by another process")]
        assert sandbox.actions.runs == {}
    assert dispatcher.send(job_id, T0).ok
    assert sweep(dispatcher, T0).sent == []  # dispatched now: nothing left for the sweeper
    assert len(sandbox.actions.runs) == 1


def test_the_sweeper_forgets_old_dispatch_outcomes(store, sandbox, make):
    job_id = routed(store, "inngest")
    store.dispatch_failed(job_id, "HTTP 503", T0)
    sweep(make(), T0 + timedelta(hours=1))  # dispatches it: one failure, one success
    assert store.heads.recent_dispatches(T0 - timedelta(days=1), 10) == {"inngest": [True, False]}
    store.cancel(job_id, "done with it", T0 + timedelta(hours=2))
    sweep(make(), T0 + timedelta(days=2))
    assert store.heads.recent_dispatches(T0 - timedelta(days=1), 10) == {}


def test_stats_show_dispatches_and_fallbacks_per_lane(store, sandbox, make, database_url):
    import json

    from click.testing import CliRunner

    from capture.cli.jobs import jobs

    now = datetime.now(UTC)  # the view counts the last hour of real time
    sandbox.faults.add("inngest:down")
    job_id = store.enqueue(
        JobSpec.create("pr-reviews", "acme/widgets", days=1),
        now,
        route=Route("inngest", "recent", "test"),
    ).job_id
    assert make().send(job_id, now).lane == "github_actions"
    result = CliRunner().invoke(jobs, ["stats", "--json"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    dispatch = json.loads(result.output)["dispatch"]
    assert dispatch["inngest"]["refused_last_hour"] == 2
    assert dispatch["inngest"]["fallbacks_out"] == 1
    assert dispatch["github_actions"]["dispatched_last_hour"] == 1
    assert dispatch["github_actions"]["fallbacks_in"] == 1
    text = CliRunner().invoke(jobs, ["stats"], env={"DATABASE_URL": database_url}).output
    assert "fallbacks_in" in text


def test_a_lane_that_starts_the_job_before_dispatched_is_recorded_still_counts_as_taken(store):
    from jobstore.lanes import dispatch

    class Eager:
        """A lane whose runner claims the job before send() even returns."""

        name = "inngest"

        def send(self, job):
            assert store.claim(job.id, "eager-runner", T0, lane="inngest").won
            return "01EAGER"

    job_id = routed(store, "inngest")
    result = dispatch(store, job_id, Eager(), T0)
    assert result.ok
    assert "moved on" in result.detail
    assert events(store, job_id)[-1] == "Started"
    assert store.heads.recent_dispatches(T0 - timedelta(minutes=1), 5) == {"inngest": [True]}


def full_at(store, **capacities: int) -> None:
    store.settings = replace(store.settings, capacities=capacities)


def test_a_full_lane_keeps_the_rest_routed_and_the_sweeper_sends_them_as_room_frees(
    store, sandbox, make
):
    dispatcher = make()
    full_at(store, github_actions=2, inngest=5)
    jobs = [routed(store, "github_actions", repo=f"acme/r{i}") for i in range(4)]
    first = dispatcher.send(jobs[0], T0)
    assert first.ok
    report = sweep(dispatcher, T0)
    assert [s.job_id for s in report.sent if s.ok] == [jobs[1]]
    assert report.waiting == 2
    assert report.as_json()["waiting_for_capacity"] == 2
    assert len(sandbox.actions.runs) == 2
    refused = dispatcher.send(jobs[2], T0)
    assert (refused.ok, refused.full) == (False, True)
    assert refused.detail.startswith("github_actions full (2 of 2")
    assert [e for e in events(store, jobs[2])] == ["Queued", "Routed"]  # not a failure
    assert store.get(jobs[2]).lane == "github_actions"  # waits its turn: no fallback
    # one starts and ends: a place frees, the next in line goes
    store.claim(jobs[0], "runner", T0, lane="github_actions")
    assert sweep(dispatcher, T0).sent == []  # running still holds its place
    store.complete(jobs[0], 1, now=T0 + timedelta(seconds=30))
    later = T0 + timedelta(seconds=31)
    assert [s.job_id for s in sweep(dispatcher, later).sent if s.ok] == [jobs[2]]
    # nothing sent was left queueing at the lane: no start deadline passes on a full lane
    deadline = store.settings.start_deadline("github_actions")
    report = sweep(dispatcher, T0 + timedelta(seconds=deadline / 2))
    assert report.undelivered == []
    assert report.waiting == 1


def test_many_asked_at_once_are_enqueued_together_and_a_full_lane_is_asked_once(
    store, sandbox, make, monkeypatch
):
    """A planner pass's bootstraps: one transaction for all, each new job sent while its
    lane has room; once the lane says full, the rest wait routed without asking again,
    and asking again for the same work creates nothing."""
    dispatcher = make()
    full_at(store, github_actions=2, inngest=5)
    since, until = T0 - timedelta(days=730), T0 - timedelta(days=30)
    asks = [
        Ask(
            JobSpec.create("historical-sync", f"acme/r{i}", since=since, until=until),
            "github_actions",
            "bootstrap",
        )
        for i in range(5)
    ] + [Ask(JobSpec.create("repository-refresh", "acme/r0", days=1), "inngest", "recent")]
    asked = []
    real = dispatcher.send
    monkeypatch.setattr(
        dispatcher, "send", lambda job_id, *a, **k: asked.append(job_id) or real(job_id, *a, **k)
    )
    done = dispatcher.submit_many(asks, T0)
    assert [(s.sent.ok, s.sent.full) for s in done] == [(True, False)] * 2 + [(False, True)] * 3 + [
        (True, False)
    ]
    assert len(asked) == 4  # two sent, one found the lane full, the refresh to Inngest
    assert len(sandbox.actions.runs) == 2
    waiting = [s.job.id for s in done[2:5]]
    assert all(events(store, j) == ["Queued", "Routed"] for j in waiting)
    assert {store.get(j).reason for j in waiting} == {"bootstrap"}
    again = dispatcher.submit_many(asks, T0)
    assert [s.job.id for s in again] == [s.job.id for s in done]
    assert not any(s.enqueued.created for s in again)
    assert len(sandbox.actions.runs) == 2


def test_a_crowded_inngest_sends_scheduled_work_to_actions_and_keeps_a_persons(
    store, sandbox, make
):
    """More waiting for Inngest than JOBSTORE_CROWDED_AFTER per place: the planner's
    refreshes go to Actions (batched there) instead of queueing; a person's request stays."""
    dispatcher = make()
    full_at(store, github_actions=20, inngest=1)
    store.settings = replace(
        store.settings, routing=replace(store.settings.routing, crowded_after=2)
    )
    waiting = [routed(store, "inngest", repo=f"acme/w{i}") for i in range(3)]
    assert dispatcher.crowded() == {"inngest": "over 2 jobs waiting for its 1 places"}
    refresh = JobSpec.create("repository-refresh", "acme/r", days=1, trigger="scheduled")
    moved = dispatcher.submit(refresh, T0)
    assert (moved.job.lane, moved.job.rule) == ("github_actions", "crowded")
    assert moved.sent.detail == BATCHED  # it rides a batch there, as quiet refreshes do
    asked = dispatcher.submit(JobSpec.create("repository-refresh", "acme/p", days=1), T0)
    assert (asked.job.lane, asked.job.rule) == ("inngest", "recent")
    for job_id in waiting:  # the queue drains: Inngest takes scheduled work again
        store.cancel(job_id, "test", T0)
    assert dispatcher.crowded() == {}
    again = JobSpec.create("repository-refresh", "acme/s", days=1, trigger="scheduled")
    assert dispatcher.submit(again, T0).job.lane == "inngest"


def test_dispatchers_racing_for_the_last_places_never_send_past_capacity(store, sandbox, make):
    """Four threads (each on its own connection, as processes would be) send eight jobs
    to a lane with room for three: exactly three go."""
    import threading

    dispatcher = make()
    full_at(store, inngest=3, github_actions=20)
    jobs = [routed(store, "inngest", repo=f"acme/r{i}") for i in range(8)]
    results, gate = [], threading.Barrier(4)

    def send(mine):
        gate.wait()
        results.extend(dispatcher.send(job_id, T0, {}) for job_id in mine)

    threads = [threading.Thread(target=send, args=(jobs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted((s.ok, s.full) for s in results) == [(False, True)] * 5 + [(True, False)] * 3
    assert len(sandbox.inngest.events) == 3
    assert store.heads.in_flight(["inngest", "github_actions"]) == {
        "inngest": 3,
        "github_actions": 0,
    }


def test_a_run_plans_no_more_legs_than_it_starts_and_the_lane_has_room_for(store, sandbox, make):
    """A historical-sync run's matrix takes at most the workflow's max-parallel children
    (each on a runner at once, counted in the lane's capacity), and only what the lane has
    room for; the parent's next run plans the next ones. A leg slower than the deadline to
    start is not read as a lost dispatch while its run's other legs move."""
    from pathlib import Path

    from jobstore.lanes.github_actions import MATRIX_PARALLEL, plan_matrix

    workflow = Path(".github/workflows/historical-sync.yml").read_text()
    assert f"max-parallel: {MATRIX_PARALLEL}" in workflow
    dispatcher = make()
    full_at(store, github_actions=6, inngest=5)
    parent = routed(store, "github_actions", rule="historical", job_type="historical-sync")
    specs = [
        JobSpec.create("historical-sync", "acme/widgets", pr_numbers=[n], parent_id=parent)
        for n in range(1, 11)
    ]
    store.enqueue_many(specs, T0, Route("github_actions", "parent", "p"))
    assert dispatcher.send(parent, T0).ok
    store.claim(parent, "plan-job", T0, lane="github_actions")  # its run's plan job
    first = plan_matrix(store, store.get(parent), "77 https://run/77", T0)
    assert len(first) == MATRIX_PARALLEL
    assert store.heads.in_flight(["github_actions"]) == {"github_actions": 5}
    # the plan job ends, the parent waits for its children: its place is free
    store.reschedule(parent, T0 + timedelta(minutes=1), attempt=1, now=T0)
    second = plan_matrix(store, store.get(parent), "78 https://run/78", T0)
    assert len(second) == 2  # six places, four legs running
    assert not set(first) & set(second)
    deadline = store.settings.start_deadline("github_actions")
    # the legs take their children one after another, each a while after the last
    step = T0
    for child in first:
        step += timedelta(seconds=deadline * 0.6)
        store.claim(child, "leg", step, lane="github_actions")
        store.complete(child, 1, now=step + timedelta(seconds=1))
    assert step - T0 > timedelta(seconds=deadline)  # run 78's two waited longer than it
    assert sweep(dispatcher, step + timedelta(seconds=10)).undelivered == []
    silent = step + timedelta(seconds=deadline + 5)  # the runs died: now they are lost
    assert sorted(sweep(dispatcher, silent).undelivered) == sorted(second)


def test_counting_what_a_lane_holds_reads_an_index_not_every_job(store, database_url):
    """Each dispatch to a lane with a capacity counts what it holds: over a year of
    finished jobs that count (and a run's children's last move) read indexes."""
    import psycopg

    from jobstore.heads import IN_FLIGHT, WAITING, WAITING_COUNT

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, "
            "attempt, version, dedupe_key, parent_id, created_at, last_event_at, turn_at) "
            "SELECT gen_random_uuid(), 'pr-reviews', 'acme/r' || (g % 500), "
            "CASE WHEN g % 1000 = 0 THEN 'dispatched' WHEN g % 10 = 1 THEN 'routed' "
            "ELSE 'completed' END, "
            "CASE WHEN g % 2 = 0 THEN 'inngest' ELSE 'github_actions' END, 'normal', 1, 3, "
            "'k' || g, CASE WHEN g % 3 = 0 THEN gen_random_uuid() END, "
            "now() - make_interval(mins => g), now() - make_interval(mins => g), "
            "now() - make_interval(mins => g) "
            "FROM generate_series(1, 50000) g"
        )
        conn.execute(  # a day of batches (the sweeper prunes older ones)
            "INSERT INTO lane_batches (member, member_attempt, leader, leader_attempt, at) "
            "SELECT gen_random_uuid(), 1, gen_random_uuid(), 1, now() "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE job_heads")
        conn.execute("ANALYZE lane_batches")
        counted = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + IN_FLIGHT, {"lanes": ["github_actions"]})
        )
        queue = "\n".join(r[0] for r in conn.execute("EXPLAIN " + WAITING, ("github_actions", 500)))
        batch = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT max(h.last_event_at) AS at FROM lane_batches m "
                "JOIN lane_batches o ON o.leader = m.leader "
                "AND o.leader_attempt = m.leader_attempt "
                "JOIN job_heads h ON h.job_id IN (o.member, o.leader) "
                "AND h.status NOT IN ('routed', 'dispatched', 'queued') "
                "WHERE m.member = %s AND m.member_attempt = %s",
                (uuid4(), 1),
            )
        )
        crowd = "\n".join(  # whether Inngest is crowded: at most 51 of its queue
            r[0] for r in conn.execute("EXPLAIN " + WAITING_COUNT, ("inngest", 51))
        )
        child = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT max(last_event_at) AS at FROM job_heads WHERE parent_id = %s "
                "AND status NOT IN ('routed', 'dispatched', 'queued')",
                (uuid4(),),
            )
        )
    assert "job_heads_active" in counted, counted
    assert "job_heads_turns" in queue, queue
    assert "job_heads_parent" in child, child
    assert "lane_batches_pkey" in batch, batch
    assert "lane_batches_leader" in batch, batch
    assert "job_heads_turns" in crowd, crowd
    assert "Seq Scan" not in counted + child + queue + batch + crowd


def quiet_refresh(store, repo: str, due: datetime | None = None):
    """A scheduled refresh the router sent to Actions for having no urgency."""
    spec = JobSpec.create(
        "repository-refresh",
        repo,
        since=T0 - timedelta(days=40),
        until=T0,
        trigger="scheduled",
        params={"due": due.isoformat()} if due else {},
    )
    return store.enqueue(spec, T0, route=Route("github_actions", "no-urgency", "t")).job_id


def test_small_refreshes_ride_one_run_per_batch_within_capacity(store, sandbox, make):
    dispatcher = make()
    full_at(store, github_actions=2, inngest=5)
    store.settings = replace(store.settings, actions_batch=5)
    jobs = [quiet_refresh(store, f"acme/q{i}") for i in range(12)]
    report = sweep(dispatcher, T0)
    sent = [s.job_id for s in report.sent if s.ok]
    assert len(sandbox.actions.runs) == 2  # two runs of five, not ten runs
    assert sent == jobs[:10]  # in their turns
    assert report.waiting == 2
    assert store.heads.in_flight(["github_actions"]) == {"github_actions": 2}
    leader = jobs[0]
    assert store.heads.batch_members(leader, 1) == [(j, 1) for j in jobs[1:5]]  # in turn
    run_ref = store.get(leader).ref
    for member in jobs[1:5]:
        assert store.get(member).ref == f"{run_ref} (batch of {leader})"
    # riders wait for the jobs before them in their run: not a lost dispatch meanwhile
    deadline = store.settings.start_deadline("github_actions")
    later = T0 + timedelta(seconds=deadline * 0.8)
    store.claim(leader, "runner", later, lane="github_actions")
    store.complete(leader, 1, now=later + timedelta(seconds=5))
    report = sweep(dispatcher, T0 + timedelta(seconds=deadline + 10))
    assert not set(report.undelivered) & set(jobs[1:5])
    assert set(report.undelivered) == set(jobs[5:10])  # the other run never started
    # a batchable job submitted waits for a batch instead of taking a run of its own
    spec = JobSpec.create(
        "repository-refresh",
        "acme/late",
        since=T0 - timedelta(days=40),
        until=T0,
        trigger="scheduled",
    )
    submitted = dispatcher.submit(spec, T0, "github_actions", reason=None)
    assert submitted.job.status.value == "routed"


def test_a_partial_batch_gathers_riders_until_its_first_has_waited_long_enough(
    store, sandbox, make
):
    dispatcher = make()
    store.settings = replace(store.settings, actions_batch=5, actions_batch_wait=600.0)
    jobs = [quiet_refresh(store, f"acme/q{i}") for i in range(3)]
    report = sweep(dispatcher, T0 + timedelta(seconds=300))
    assert (report.sent, report.waiting, sandbox.actions.runs) == ([], 3, {})
    report = sweep(dispatcher, T0 + timedelta(seconds=601))
    assert sorted(s.job_id for s in report.sent if s.ok) == sorted(jobs)
    assert len(sandbox.actions.runs) == 1  # one run for the three


def test_a_partial_batch_leaves_before_a_rider_would_pass_its_freshness_target(
    store, sandbox, make
):
    dispatcher = make()
    store.settings = replace(store.settings, actions_batch=5, actions_batch_wait=1800.0)
    # the lane may take its start deadline (900 s) and a run's margin (300 s) to do it
    quiet_refresh(store, "acme/roomy", due=T0 + timedelta(hours=3))
    report = sweep(dispatcher, T0 + timedelta(seconds=60))
    assert (report.sent, report.waiting) == ([], 1)
    pressed = quiet_refresh(store, "acme/pressed", due=T0 + timedelta(seconds=1300))
    report = sweep(dispatcher, T0 + timedelta(seconds=60))
    assert (report.sent, report.waiting) == ([], 2)  # 1240 s left: more than 1200
    report = sweep(dispatcher, T0 + timedelta(seconds=120))
    assert pressed in {s.job_id for s in report.sent if s.ok}
    assert len(sandbox.actions.runs) == 1  # the two together, at once


def test_a_split_refreshs_parts_ride_a_batch_at_once_and_a_backfills_wait_for_its_matrix(
    store, sandbox, make
):
    # the capture workflow has no matrix: nothing but the sweeper sends a refresh's parts
    dispatcher = make()
    store.settings = replace(store.settings, actions_batch=5, actions_batch_wait=1800.0)
    parents = {}
    for job_type in ("repository-refresh", "historical-sync"):
        spec = JobSpec.create(job_type, f"acme/{job_type}", since=T0 - timedelta(days=9), until=T0)
        parents[job_type] = store.enqueue(spec, T0, route=Route("github_actions", "t", "t")).job_id

    def parts(job_type: str, n: int) -> list:
        specs = [
            JobSpec.create(
                job_type,
                f"acme/{job_type}",
                pr_numbers=[i],
                parent_id=parents[job_type],
                params={"part": i},
            )
            for i in range(1, n + 1)
        ]
        route = Route("github_actions", "parent", "part of a split job")
        return [e.job_id for e in store.enqueue_many(specs, T0, route)]

    refresh_parts, backfill_parts = parts("repository-refresh", 7), parts("historical-sync", 3)
    report = sweep(dispatcher, T0 + timedelta(seconds=30))
    sent = {s.job_id for s in report.sent if s.ok}
    assert set(refresh_parts) <= sent  # at once: their parent waits for them
    assert not set(backfill_parts) & sent  # the parent's run plans its matrix
    led = {str(j) for j in refresh_parts}
    runs = [r for r in sandbox.actions.runs.values() if r.inputs["job_id"] in led]
    assert len(runs) == 2  # two batches (5 + 2), not seven runs
    leaders = [UUID(r.inputs["job_id"]) for r in runs]
    assert sorted(len(store.heads.batch_members(leader, 1)) for leader in leaders) == [1, 4]
