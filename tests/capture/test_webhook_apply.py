"""Webhook deliveries acted on, end to end in one process: the sandbox's world changes,
its App webhook delivers (signed, with faults) to bin/serve's Flask app, the receiver
stores and enqueues the repository's apply job, a local worker runs it, and the planner
applies installation and repository events and reconciles with the delivery log."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from githubkit.webhooks import parse

from capture.api.app import ApiSettings, Context, create_app
from capture.cli.jobs import jobs
from capture.freshness.loop import plan_once
from capture.freshness.registry import Entry, Registry
from capture.github.app import GitHubApp
from capture.github.session import SERVER_TRIES
from capture.ops.alerts import RULES
from capture.ops.health import Health
from capture.webhooks import WebhookSettings
from capture.webhooks.planner import recheck
from capture.webhooks.reconcile import reconcile
from capture.webhooks.status import UNREACHABLE_FOR, unreachable
from devtools.bench.budget import private_key
from devtools.sandbox import World
from devtools.sandbox.apps import Installation
from devtools.sandbox.faults import Fault
from devtools.sandbox.webhooks import Faults
from jobstore import Secret
from jobstore.dispatcher import Dispatcher
from tests.capture.conftest import LOCAL
from tests.capture.rig import LOCAL as ROUTE
from tests.sandbox_fixtures import NOW

SECRET = "webhook-secret-for-apply-tests"
APP_ID = 515
PATH = "/v1/github/webhooks"


@pytest.fixture(scope="module")
def keys():
    return private_key()


@pytest.fixture
def world() -> World:
    world = World(seed=11, now=NOW)
    world.add_repository("acme/widgets", 30, 60)
    world.add_repository("acme/gadgets", 10, 60)
    world.add_repository("other/thing", 10, 60)
    return world


class Hooked:
    """The rig, the API app receiving the sandbox's deliveries, the planner."""

    def __init__(self, rig, keys, database_url, faults: Faults | None = None) -> None:
        from capture.github import app as app_module

        app_module._TOKENS.clear()
        self.rig, self.clock, self.url = rig, rig.clock, database_url
        self.settings = WebhookSettings.load(
            {"GITHUB_WEBHOOK_SECRET": SECRET, "CAPTURE_WEBHOOK_LANE": "local"}
        )
        self.ctx = Context(rig.store, LOCAL, now=rig.clock)
        api = create_app(
            self.ctx, ApiSettings.load({"CAPTURE_API_TOKENS": "t" * 24}), self.settings
        )
        self.client = api.test_client()
        self.answers: list[int] = []
        rig.sandbox.apps.register(APP_ID, keys[1])
        rig.sandbox.apps.install(Installation(77, APP_ID, "acme"))
        self.hooks = rig.sandbox.enable_webhooks(SECRET, PATH, self.send, faults)
        self.app = GitHubApp(
            APP_ID,
            Secret(keys[0]),
            httpx.Client(transport=rig.sandbox.transport()),
            "http://sandbox.invalid",
            rig.clock,
        )
        self.registry = Registry(rig.store.database("registry"))
        self.dispatcher = Dispatcher(rig.store, {}, {})
        for name in ("acme/widgets", "acme/gadgets"):  # what was captured before
            rig.run(rig.enqueue("historical-sync", name, days=90))
        rig.sandbox.ledger.clear()

    def send(self, url: str, headers: dict, body: bytes) -> int:
        status = self.client.post(url, data=body, headers=headers).status_code
        self.answers.append(status)
        return status

    def deliver(self, seconds: float = 2) -> None:
        self.clock.advance(seconds=seconds)
        self.hooks.pump(self.clock())

    def work(self) -> list:
        results = []
        while waiting := self.rig.store.heads.routed(["local"]):
            results += [self.rig.run(job_id) for job_id in waiting]
        return results

    def after_window(self, seconds: int | None = None) -> list:
        """Past the window (by default the longer, for files and commits): the waiting
        apply jobs run again."""
        if seconds is None:
            seconds = max(self.settings.coalesce_seconds, self.settings.details_seconds) + 1
        self.clock.advance(seconds=seconds)
        for job_id in self.rig.store.due_retries(self.clock()):
            self.rig.store.route(job_id, ROUTE)
        return self.work()

    def plan(self):
        return plan_once(
            self.registry, self.dispatcher, self.rig.gh(), self.clock(), LOCAL, self.settings
        )

    def rows(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(query, params).fetchall()

    def points(self) -> int:
        return sum(e.points for e in self.rig.sandbox.ledger.entries if e.kind == "graphql")


@pytest.fixture
def hooked(rigs, world, keys, database_url):
    made = []

    def make(faults: Faults | None = None) -> Hooked:
        h = Hooked(rigs(world), keys, database_url, faults)
        made.append(h)
        return h

    yield make
    for h in made:
        h.ctx.close()


def test_a_comment_is_stored_from_its_payload_without_an_api_call(hooked, world):
    h = hooked()
    comment = world.add_comment("acme/widgets", 3, h.clock(), "From a webhook")
    h.deliver()
    assert h.answers == [202]
    results = h.work()
    assert [r.outcome for r in results] == ["completed"]
    assert h.rows("SELECT body FROM comments WHERE id = %s", comment.database_id) == [
        ("From a webhook",)
    ]
    assert h.points() == 0  # the payload carried it whole
    assert h.rows("SELECT status FROM github_deliveries") == [("processed",)]


def test_a_new_pull_request_is_stored_at_once_and_its_files_after_the_window(hooked, world):
    h = hooked()
    pr = world.add_pull_request("acme/widgets", h.clock(), bare=True)
    world.add_comment("acme/widgets", pr.number, h.clock(), "first!")
    world.edit_pull_request("acme/widgets", pr.number, h.clock(), "A better title")
    h.deliver()
    h.work()
    assert h.rows("SELECT title FROM pull_requests WHERE id = %s", pr.database_id) == [
        ("A better title",)
    ]
    assert h.rows("SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id) == [
        (0,)
    ]
    assert h.points() == 0
    h.after_window(h.settings.coalesce_seconds + 1)
    assert h.points() == 0  # stored: its files and commits may wait for others to join
    later = world.add_comment("acme/widgets", 3, h.clock(), "while the job waits")
    h.deliver()
    assert [r.outcome for r in h.work()] == ["waiting"]  # woken, applied, waiting again
    assert h.rows("SELECT body FROM comments WHERE id = %s", later.database_id) == [
        ("while the job waits",)
    ]
    h.after_window()
    files = h.rows("SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id)
    assert files == [(len(pr.files),)]
    assert files[0][0] > 0
    graphql = [e for e in h.rig.sandbox.ledger.entries if e.kind == "graphql"]
    assert len(graphql) == 1  # the burst: one targeted refresh
    assert {s for (s,) in h.rows("SELECT status FROM github_deliveries")} == {"processed"}


def test_out_of_order_and_duplicate_deliveries_never_move_data_back(hooked, world):
    h = hooked(Faults(duplicate=1.0))
    world.edit_pull_request("acme/widgets", 2, h.clock(), "first edit")
    h.clock.advance(seconds=5)
    world.edit_pull_request("acme/widgets", 2, h.clock(), "second edit")
    queued = sorted(h.hooks.queue)
    newer = [q for q in queued if b"second edit" in q.body]
    for q in newer:  # the second edit reaches us first
        q.send_at -= timedelta(seconds=30)
    import heapq

    heapq.heapify(h.hooks.queue)
    h.deliver(10)
    h.work()
    title = h.rows(
        "SELECT p.title FROM pull_requests p JOIN repositories r ON r.id = p.repository_id "
        "WHERE r.full_name = 'acme/widgets' AND p.number = 2"
    )
    assert title == [("second edit",)]
    assert h.rows("SELECT count(*), sum(duplicates) FROM github_deliveries") == [(2, 2)]
    assert h.answers.count(202) == 2
    assert h.answers.count(200) == 2


def test_a_deleted_comment_is_marked_and_a_late_edit_does_not_bring_it_back(hooked, world):
    h = hooked()
    comment = world.add_comment("acme/widgets", 4, h.clock(), "soon gone")
    h.deliver()
    h.work()
    h.clock.advance(seconds=3)
    world.edit_comment("acme/widgets", 4, comment.database_id, h.clock(), "edited")
    edited = h.hooks.queue[-1]
    h.clock.advance(seconds=3)
    world.delete_comment("acme/widgets", 4, comment.database_id, h.clock())
    edited.send_at += timedelta(seconds=60)  # the edit arrives after the deletion
    import heapq

    heapq.heapify(h.hooks.queue)
    h.deliver(5)
    h.work()
    assert h.rows(
        "SELECT deleted_at IS NOT NULL FROM comments WHERE id = %s", comment.database_id
    ) == [(True,)]
    h.deliver(120)
    h.work()
    assert h.rows(
        "SELECT deleted_at IS NOT NULL, body FROM comments WHERE id = %s", comment.database_id
    ) == [(True, "soon gone")]


def test_a_payload_that_cannot_be_applied_is_quarantined_and_the_rest_go_on(hooked, world):
    h = hooked()
    bad = {"action": "edited", "pull_request": {"number": 1}, "repository": None}
    repo = h.hooks.shapes.repository(world.repository("acme/widgets"))
    bad["repository"] = repo
    h.hooks.emit("pull_request", "edited", bad, h.clock(), 77, repo["id"])
    comment = world.add_comment("acme/widgets", 3, h.clock(), "still stored")
    h.deliver()
    results = h.work()
    assert [r.outcome for r in results] == ["completed"]
    statuses = dict(h.rows("SELECT event, status FROM github_deliveries"))
    assert statuses == {"pull_request": "quarantined", "issue_comment": "processed"}
    assert h.rows("SELECT count(*) FROM comments WHERE id = %s", comment.database_id) == [(1,)]


def test_a_delivery_that_never_arrived_is_read_from_githubs_log_while_the_receiver_is_down(
    hooked, world
):
    h = hooked(Faults(down=[(NOW, NOW + timedelta(hours=1))]))
    comments = [world.add_comment("acme/widgets", n, h.clock(), f"c{n}") for n in (1, 2, 3)]
    h.deliver()
    assert h.answers == []  # the receiver is down: GitHub logged failures
    h.rig.sandbox.ledger.clear()
    done = recheck(h.rig.store.database("webhooks"), h.app, h.clock(), h.dispatcher, "local")
    assert (done.failed, done.pulled, done.redelivered) == (3, 3, 0)
    assert done.apply == [(world.repository("acme/widgets").database_id, "acme/widgets")] * 3
    asked = [e.path for e in h.rig.sandbox.ledger.entries]
    assert sum(p.startswith("/app/hook/deliveries/") for p in asked) == 3  # one GET each
    assert not [p for p in asked if p.endswith("/attempts")]  # nothing asked to be resent
    h.work()  # its apply job, enqueued by the recheck: nothing waits for the catch-up
    ids = [c.database_id for c in comments]
    assert h.rows("SELECT count(*) FROM comments WHERE id = ANY(%s)", ids) == [(3,)]
    counted = h.rows("SELECT name, n FROM webhook_counts WHERE event = 'issue_comment' ORDER BY 1")
    assert counted == [("processed", 3), ("pulled", 3)]
    again = recheck(h.rig.store.database("webhooks"), h.app, h.clock(), h.dispatcher, "local")
    assert (again.failed, again.pulled, again.redelivered) == (0, 0, 0)  # stored: done
    # data flows, but the operator is told GitHub cannot reach the receiver
    h.clock.advance(minutes=6)
    health = Health(
        at=h.clock(),
        unreachable=unreachable(h.rig.store.database("webhooks"), h.clock(), UNREACHABLE_FOR),
    )
    alert = next(r for r in RULES if r.name == "WebhookReceiverUnreachable")
    assert [key for key, _ in alert.check(health)] == ["receiver"]
    assert "3 read from its log" in alert.check(health)[0][1]
    shown = CliRunner().invoke(jobs, ["webhooks"], env={"DATABASE_URL": h.url})
    assert shown.exit_code == 0, shown.output
    assert "GitHub is not reaching the receiver: 3 deliveries read from its log" in shown.output
    assert "pulled 3" in shown.output
    # the receiver is back and one comes again (a redelivery asked for by hand): the same
    # delivery id, stored once, applied once
    h.clock.now = NOW + timedelta(hours=1, minutes=1)
    attempt = next(a for a in h.hooks.log if a.guid == h.hooks.log[0].guid)
    h.hooks.redeliver(attempt.id)
    h.deliver()
    assert h.answers == [200]  # a duplicate: answered, not applied again
    assert h.rows("SELECT count(*), sum(duplicates) FROM github_deliveries") == [(3, 1)]
    world.add_comment("acme/widgets", 1, h.clock(), "posted, as it should be")
    h.deliver()
    assert h.answers == [200, 202]
    assert unreachable(h.rig.store.database("webhooks"), h.clock(), UNREACHABLE_FOR) is None
    confirmed = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    assert confirmed.through is not None
    assert confirmed.through > comments[-1].updated_at  # the installation is confirmed


def test_the_reconciler_asks_again_for_what_the_log_will_not_give_whole(hooked, world):
    h = hooked(Faults(down=[(NOW, NOW + timedelta(hours=1))]))
    h.hooks.log_payloads = False  # e.g. a delivery GitHub no longer holds whole
    comments = [world.add_comment("acme/widgets", n, h.clock(), f"c{n}") for n in (1, 2, 3)]
    h.deliver()
    assert h.answers == []  # the receiver was down: GitHub logged failures
    assert h.rows("SELECT count(*) FROM github_deliveries") == [(0,)]
    h.clock.now = NOW + timedelta(hours=1, minutes=5)
    done = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    # nothing got through since the failures: the newest is asked for, as a canary
    assert (done.listed, done.failed, done.redelivered) == (3, 3, 1)
    assert h.rows("SELECT count(*) FROM webhook_redeliveries") == [(3,)]  # all noted
    again = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    assert (again.failed, again.redelivered) == (3, 0)  # asked for just now: not yet again
    h.deliver()
    assert h.answers == [202]  # the canary came: the receiver is back
    rest = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    assert (rest.failed, rest.redelivered) == (2, 2)  # the others at once, however old
    h.clock.advance(seconds=5)
    assert reconcile(h.rig.store.database("webhooks"), h.app, h.clock()).redelivered == 0
    h.clock.advance(seconds=11)
    later = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    assert later.redelivered == 2  # still not received: asked again, after a pause
    h.deliver()
    h.work()
    ids = [c.database_id for c in comments]
    assert h.rows("SELECT count(*) FROM comments WHERE id = ANY(%s)", ids) == [(3,)]
    last = reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    assert (last.failed, last.redelivered) == (0, 0)
    assert h.rows("SELECT count(*) FROM webhook_redeliveries WHERE resolved_at IS NULL") == [(0,)]


def test_installations_track_and_untrack_repositories(hooked, world):
    h = hooked()
    repos = [world.repository("acme/widgets"), world.repository("acme/gadgets")]
    h.hooks.installation_event("installation", "created", 77, repos)
    h.deliver()
    report = h.plan()
    assert sorted(report.webhooks["tracked"]) == ["acme/gadgets", "acme/widgets"]
    tracked = h.rows(
        "SELECT repository, tier, installation_id FROM tracked_repositories ORDER BY 1"
    )
    assert tracked == [("acme/gadgets", "warm", 77), ("acme/widgets", "warm", 77)]
    h.hooks.installation_event("installation_repositories", "removed", 77, repos[1:])
    h.deliver()
    h.plan()
    assert h.rows("SELECT repository FROM tracked_repositories") == [("acme/widgets",)]
    h.hooks.installation_event("installation", "deleted", 77, [])
    h.deliver()
    h.plan()
    assert h.rows("SELECT count(*) FROM tracked_repositories") == [(0,)]


def test_a_rename_by_webhook_moves_the_tracked_repository(hooked, world):
    h = hooked()
    h.registry.track([Entry("acme/gadgets", "hot")], h.clock())
    world.rename_repository("acme/gadgets", "acme/gizmos")
    h.deliver()
    h.plan()
    assert h.rows("SELECT repository FROM tracked_repositories") == [("acme/gizmos",)]
    assert h.rows("SELECT kind, old_name, new_name FROM repository_events") == [
        ("renamed", "acme/gadgets", "acme/gizmos")
    ]


def test_every_payload_the_sandbox_sends_parses_under_githubkit(hooked, world):
    h = hooked()
    pr = world.add_pull_request("acme/widgets", h.clock(), bare=True)
    world.edit_pull_request("acme/widgets", pr.number, h.clock(), "Edited")
    world.add_review("acme/widgets", pr.number, h.clock(), "APPROVED")
    comment = world.add_comment("acme/widgets", pr.number, h.clock(), "hi")
    world.add_review_comment("acme/widgets", pr.number, h.clock())
    world.edit_comment("acme/widgets", pr.number, comment.database_id, h.clock(), "hi!")
    world.delete_comment("acme/widgets", pr.number, comment.database_id, h.clock())
    h.hooks.installation_event("installation", "created", 77, [world.repository("acme/gadgets")])
    h.hooks.installation_event(
        "installation_repositories", "added", 77, [world.repository("acme/gadgets")]
    )
    world.rename_repository("acme/gadgets", "acme/gizmos")
    sent = sorted(h.hooks.queue)
    assert len(sent) == 10
    for item in sent:
        parsed = parse(item.event, item.body)
        assert parsed.action == json.loads(item.body)["action"]


def test_only_covered_repositories_are_delivered(hooked, world):
    h = hooked()
    world.add_comment("other/thing", 1, h.clock(), "no installation here")
    assert h.hooks.queue == []


def test_new_pull_requests_of_several_repositories_share_one_query(hooked, world):
    h = hooked()
    first = world.add_pull_request("acme/widgets", h.clock(), bare=True)
    h.clock.advance(seconds=5)
    second = world.add_pull_request("acme/gadgets", h.clock(), bare=True)
    h.deliver()
    assert [r.outcome for r in h.work()] == ["waiting", "waiting"]
    assert h.points() == 0  # both rows stored from their payloads; files after the window
    results = h.after_window()
    assert h.points() >= 1
    graphql = [e for e in h.rig.sandbox.ledger.entries if e.kind == "graphql"]
    assert len(graphql) == 1  # both pull requests in one nodes(ids:) query
    for pr in (first, second):
        files = h.rows("SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id)
        assert files == [(len(pr.files),)]
        assert files[0][0] > 0
    statuses = h.rows("SELECT status, job_id FROM github_deliveries ORDER BY received_at")
    assert {s for s, _ in statuses} == {"processed"}
    assert len({j for _, j in statuses}) == 1  # the first job due refreshed both
    assert sorted(r.outcome for r in results) == ["completed", "completed"]


def test_a_comment_on_an_unknown_pull_request_brings_it_whole_after_the_short_window(hooked, world):
    h = hooked()
    pr = world.add_pull_request("acme/widgets", h.clock(), bare=True)
    h.hooks.queue.clear()  # its opened delivery never came
    world.add_comment("acme/widgets", pr.number, h.clock(), "first!")
    h.deliver()
    h.work()
    assert h.rows("SELECT count(*) FROM pull_requests WHERE id = %s", pr.database_id) == [(0,)]
    h.after_window(h.settings.coalesce_seconds + 1)
    assert h.rows("SELECT count(*) FROM pull_requests WHERE id = %s", pr.database_id) == [(1,)]
    files = h.rows("SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id)
    assert files == [(len(pr.files),)]
    assert h.rows("SELECT count(*) FROM comments WHERE pull_request_id = %s", pr.database_id) == [
        (1,)
    ]


def test_a_probe_that_sees_a_comment_webhooks_brought_refreshes_nothing(hooked, world):
    h = hooked()
    h.hooks.installation_event("installation", "created", 77, [world.repository("acme/widgets")])
    h.deliver()
    h.plan()  # tracked and bootstrapped
    h.work()
    h.clock.advance(hours=7)  # the probe at its (warm) target, the safety net, is due
    reconcile(h.rig.store.database("webhooks"), h.app, h.clock())  # deliveries confirmed
    world.add_comment("acme/widgets", 3, h.clock(), "the pull request moves with it")
    h.deliver()
    h.work()
    pr = world.repository("acme/widgets").pulls[3]
    stored, seen = h.rows(
        "SELECT updated_at, seen_updated_at FROM pull_requests WHERE id = %s", pr.database_id
    )[0]
    assert stored < pr.updated_at == seen  # told by the issue, not stored as of it
    h.rig.sandbox.ledger.clear()
    report = h.plan()  # before the reconciler confirms the comment's delivery
    assert report.probed == 1
    assert report.delivered == 1  # the probe saw the move; the webhook had brought it
    assert report.changed == []
    assert report.refreshes == {}


def test_a_new_pull_requests_files_and_commits_ride_the_next_probe_query(hooked, world):
    """No query of their own: the planner's probe query carries them for its one point;
    the apply job, woken at the end of its window, finds nothing left to fetch."""
    h = hooked()
    repos = [world.repository("acme/widgets"), world.repository("acme/gadgets")]
    h.hooks.installation_event("installation", "created", 77, repos)
    h.deliver()
    h.plan()  # tracked and bootstrapped
    h.work()
    h.clock.advance(hours=7)  # probes due (a warm tier's target after the bootstrap)
    reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    pr = world.add_pull_request("acme/widgets", h.clock(), bare=True)
    h.deliver()
    assert [r.outcome for r in h.work()] == ["waiting"]  # the row stored; files wait
    h.rig.sandbox.ledger.clear()
    report = h.plan()
    assert report.probed == 2
    assert report.rode == 1
    graphql = [e for e in h.rig.sandbox.ledger.entries if e.kind == "graphql"]
    probes = [e for e in graphql if e.extra.get("operation") == "Probe"]
    assert [e.points for e in probes] == [1]  # one query, one point, riders included
    assert "PullRequestsByIds" not in {e.extra.get("operation") for e in graphql}
    files = h.rows("SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id)
    assert files == [(len(pr.files),)]
    assert files[0][0] > 0
    assert h.rows("SELECT status, note FROM github_deliveries WHERE event = 'pull_request'") == [
        ("processed", "its pull request refreshed")
    ]
    h.rig.sandbox.ledger.clear()
    assert [r.outcome for r in h.after_window()] == ["completed"]
    assert h.points() == 0  # nothing was left for the apply job


def test_riders_the_probe_could_not_bring_are_given_back_to_their_apply_job(hooked, world):
    h = hooked()
    h.hooks.installation_event("installation", "created", 77, [world.repository("acme/widgets")])
    h.deliver()
    h.plan()
    h.work()
    h.clock.advance(hours=7)
    reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    world.add_pull_request("acme/widgets", h.clock(), bare=True)
    h.deliver()
    h.work()
    h.rig.sandbox.faults.add(Fault("graphql", "502", count=SERVER_TRIES))  # the probe fails
    report = h.plan()
    assert report.rode == 0
    assert any("probe of 1 repositories failed" in e for e in report.errors)
    claims = h.rows("SELECT status, claimed_by FROM github_deliveries WHERE event = 'pull_request'")
    assert claims == [("refresh", None)]  # given back at once
    assert [r.outcome for r in h.after_window()] == ["completed"]  # its job fetched them
    assert h.rows("SELECT status FROM github_deliveries WHERE event = 'pull_request'") == [
        ("processed",)
    ]


def test_a_probe_right_after_a_change_finds_its_delivery_waiting_and_refreshes_nothing(
    hooked, world
):
    h = hooked()
    h.hooks.installation_event("installation", "created", 77, [world.repository("acme/widgets")])
    h.deliver()
    h.plan()
    h.work()
    h.clock.advance(hours=7)
    reconcile(h.rig.store.database("webhooks"), h.app, h.clock())
    world.add_review("acme/widgets", 2, h.clock(), "APPROVED")
    h.deliver()  # received and stored; its apply job has not run yet
    assert h.rows("SELECT status FROM github_deliveries WHERE event = 'pull_request_review'") == [
        ("received",)
    ]
    report = h.plan()
    assert report.delivered == 1  # the move is in a delivery waiting to be applied
    assert report.refreshes == {}
    h.work()
    review = world.repository("acme/widgets").pulls[2].reviews[-1]
    assert h.rows("SELECT count(*) FROM reviews WHERE id = %s", review.database_id) == [(1,)]
