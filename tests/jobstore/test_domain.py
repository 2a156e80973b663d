"""The Job state machine and event contract, pure (no database)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.utils import get_topic

from jobstore.domain import ALLOWED, Job, RetryPolicy, Status, retry_delay
from jobstore.errors import InvalidTransition
from jobstore.spec import JobSpec

NOW = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3)


def job_in(status: Status) -> Job:
    job = Job.enqueue(uuid4(), JobSpec.create("pr-reviews", "acme/w", days=1), NOW)
    steps = {
        Status.QUEUED: [],
        Status.ROUTED: ["route"],
        Status.DISPATCHED: ["route", "dispatch"],
        Status.RUNNING: ["route", "claim"],
        Status.RETRY_SCHEDULED: ["route", "claim", "fail"],
        Status.COMPLETED: ["route", "claim", "complete"],
        Status.FAILED: ["route", "claim", "fail permanently"],
        Status.CANCELLED: ["cancel"],
    }[status]
    for step in steps:
        act(job, step)
    assert job.status is status
    return job


def act(job: Job, action: str) -> None:
    {
        "route": lambda: job.route("local", "explicit", "test", NOW),
        "dispatch": lambda: job.dispatch("ref-1", NOW),
        "record a failed dispatch": lambda: job.dispatch_failed("HTTP 422", NOW),
        "claim": lambda: job.start("w1", NOW),
        "progress": lambda: job.progress(NOW, 1, 10, "c1", 1),
        "complete": lambda: job.complete(NOW, 10),
        "fail": lambda: job.fail("network", "reset", NOW, POLICY),
        "fail permanently": lambda: job.fail("not_found", "404", NOW, POLICY, retryable=False),
        "reschedule": lambda: job.reschedule(NOW, NOW),
        "cancel": lambda: job.cancel("operator", NOW),
        "replay": lambda: job.replay(NOW),
    }[action]()


CASES = [(status, action) for status in Status for action in ALLOWED]


@pytest.mark.parametrize(("status", "action"), CASES)
def test_state_machine(status: Status, action: str):
    job = job_in(status)
    if status in ALLOWED[action]:
        act(job, action)
    else:
        with pytest.raises(InvalidTransition) as err:
            act(job, action)
        assert str(err.value) == f"job {job.id} is {status.value}: cannot {action}"


def test_final_states_allow_nothing_but_a_replay_of_a_failure():
    for status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        assert status.is_final
        allowed = [action for action, states in ALLOWED.items() if status in states]
        assert allowed == (["replay"] if status is Status.FAILED else [])


def test_a_replay_is_the_next_attempt_of_the_same_job_due_now():
    job = job_in(Status.FAILED)
    attempt = job.attempt
    job.replay(NOW)
    assert (job.status, job.attempt, job.not_before) == (
        Status.RETRY_SCHEDULED,
        attempt + 1,
        NOW,
    )


def test_retryable_failure_schedules_the_next_attempt_of_the_same_job():
    job = job_in(Status.RUNNING)
    assert job.fail("network", "reset", NOW, POLICY, rng=random.Random(0))
    assert (job.status, job.attempt, job.failures) == (Status.RETRY_SCHEDULED, 2, 1)


def test_failure_after_the_last_attempt_is_final():
    job = job_in(Status.RUNNING)
    for _ in range(POLICY.max_attempts - 1):
        assert job.fail("network", "reset", NOW, POLICY)
        job.route("local", "explicit", "retry", NOW)
        job.start("w", NOW)
    assert not job.fail("network", "reset", NOW, POLICY)
    assert job.status is Status.FAILED


def test_retry_delay_doubles_with_equal_jitter_and_a_cap():
    policy = RetryPolicy(base_delay=10, max_delay=100)
    low = random.Random()
    low.random = lambda: 0.0  # type: ignore[method-assign]
    high = random.Random()
    high.random = lambda: 1.0  # type: ignore[method-assign]
    assert [retry_delay(n, policy, low) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 50]
    assert [retry_delay(n, policy, high) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]


def test_progress_keeps_the_last_cursor_and_adds_points():
    job = job_in(Status.RUNNING)
    job.progress(NOW, 10, 100, "c10", 3)
    job.progress(NOW, 20, 100, None, 4)
    assert (job.done, job.cursor, job.api_points) == (20, "c10", 7)


# Event topics are stored with every event: a change here breaks existing databases.
TOPICS = {
    "Queued": "jobstore.domain:Job.Queued",
    "Routed": "jobstore.domain:Job.Routed",
    "Dispatched": "jobstore.domain:Job.Dispatched",
    "DispatchFailed": "jobstore.domain:Job.DispatchFailed",
    "Started": "jobstore.domain:Job.Started",
    "Progressed": "jobstore.domain:Job.Progressed",
    "Failed": "jobstore.domain:Job.Failed",
    "RetryScheduled": "jobstore.domain:Job.RetryScheduled",
    "Completed": "jobstore.domain:Job.Completed",
    "Cancelled": "jobstore.domain:Job.Cancelled",
}


@pytest.mark.parametrize(("name", "topic"), TOPICS.items())
def test_event_topics_are_pinned(name: str, topic: str):
    assert get_topic(getattr(Job, name)) == topic


def test_event_fields_match_the_design_contract():
    fields = {name: set(getattr(Job, name).__dataclass_fields__) for name in TOPICS}
    base = {"originator_id", "originator_version", "timestamp"}
    # priority (optional): a fallback from Inngest raises it (DESIGN §5).
    assert fields["Routed"] - base == {"lane", "rule", "reason", "fallback_from", "priority"}
    assert fields["Dispatched"] - base == {"lane", "ref", "attempt"}
    assert fields["DispatchFailed"] - base == {"lane", "error"}
    assert fields["Started"] - base == {"worker", "lane", "attempt"}
    assert fields["Progressed"] - base == {"done", "total", "cursor", "api_points", "note"}
    assert fields["Failed"] - base == {"error_type", "message", "retryable", "attempt"}
    assert fields["RetryScheduled"] - base == {"attempt", "not_before", "cursor"}
    assert fields["Completed"] - base == {"items", "api_points", "summary"}
    assert fields["Cancelled"] - base == {"reason"}
    assert {
        "job_type",
        "repository",
        "since",
        "until",
        "pr_numbers",
        "max_items",
        "trigger",
        "priority",
        "dedupe_key",
        "parent_id",
        "params",
    } <= fields["Queued"]


@pytest.mark.parametrize("status", list(Status))
def test_a_fork_takes_every_command_without_touching_the_job_it_came_from(status):
    """`fork` is a shallow copy: it holds only if every command replaces attributes."""
    original = job_in(status)
    original.collect_events()  # as saved
    before = {k: (v.copy() if isinstance(v, list | dict) else v) for k, v in vars(original).items()}
    for action in ALLOWED:
        fork = original.fork()
        try:
            act(fork, action)
        except InvalidTransition:
            continue
        assert fork.pending_events
        assert not original.pending_events
        assert vars(original) == before, action
