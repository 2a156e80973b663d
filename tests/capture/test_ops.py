"""The operating picture: /metrics values equal the views', the alert rules fire and
resolve once each (webhook delivery retried until it takes), the automatic rollback, and
the Prometheus rules file (promtool) naming the same rules and thresholds."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from capture.cli.jobs import jobs
from capture.freshness.registry import Registry
from capture.github.ledger import PostgresBudgets
from capture.ops import alerts
from capture.ops.health import snapshot
from capture.ops.metrics import render
from capture.ops.oversee import oversee
from jobstore import reads, views
from jobstore.dispatcher import Dispatcher
from jobstore.routing import Route
from jobstore.secret import Secret
from jobstore.spec import JobSpec

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def job_views(store, database_url):
    v = views.open_views(database_url)
    yield v
    v.close()


def ended_jobs(store, lane: str, failed: int, completed: int, now: datetime = NOW) -> None:
    """Jobs on `lane` that ran once: `failed` of them failed for good, the rest completed."""
    for i in range(failed + completed):
        spec = JobSpec.create("pr-reviews", f"acme/r{lane[:3]}{i}", days=1)
        job_id = store.enqueue(spec, now, route=Route(lane, "recent", "test")).job_id
        store.dispatched(job_id, "ref", now)
        assert store.claim(job_id, "w1", now).won
        if i < failed:
            store.fail(job_id, "github", "HTTP 500 from /graphql", retryable=False, now=now)
        else:
            store.complete(job_id, 3, api_points=2, now=now)


class Receiver:
    """A webhook receiver on a real local port: answers `codes` in turn (then 204)."""

    def __init__(self, codes=()) -> None:
        self.got: list[dict] = []
        self.codes = list(codes)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                code = receiver.codes.pop(0) if receiver.codes else 204
                if code < 300:
                    receiver.got.append(json.loads(body))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?secret=s3cr3t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def look(store):
    """The health snapshot, as /metrics and the sweeper read it."""
    return snapshot(
        store.database("health"),
        Dispatcher(store, {}),
        PostgresBudgets(store.database("budgets")),
        Registry(store.database("registry")),
        NOW,
    )


def test_metrics_are_counters_and_histograms_of_the_rollups(store, database_url, job_views):
    ended_jobs(store, "inngest", failed=1, completed=3)
    ended_jobs(store, "github_actions", failed=0, completed=2)
    spec = JobSpec.create("pr-reviews", "acme/waiting", days=1)
    store.enqueue(spec, NOW, route=Route("local", "explicit", "test"))
    views.catch_up(store, job_views)
    text = render(look(store))
    got = samples(text)
    kinds = {f.name: f.type for f in text_string_to_metric_families(text.decode())}
    assert kinds["prcapture_jobs_completed"] == "counter"
    assert kinds["prcapture_job_wait_seconds"] == "histogram"
    inngest = (("job_type", "pr-reviews"), ("lane", "inngest"))
    assert got[("prcapture_jobs_enqueued_total", inngest)] == 4
    assert got[("prcapture_jobs_completed_total", inngest)] == 3
    assert got[("prcapture_job_attempts_failed_total", inngest)] == 1
    assert got[("prcapture_job_api_points_total", inngest)] == 6
    assert got[("prcapture_job_wait_seconds_count", inngest)] == 4
    assert (
        got[
            (
                "prcapture_job_wait_seconds_bucket",
                (*inngest[:1], ("lane", "inngest"), ("le", "1.0")),
            )
        ]
        == 4
    )
    assert got[("prcapture_job_run_seconds_count", inngest)] == 3
    assert got[("prcapture_jobs", (("lane", "local"), ("state", "pending")))] == 1
    assert got[("prcapture_projection_lag_events", ())] == 0
    stats = reads.lane_statistics(store.database("reads"))
    assert (stats["inngest"]["completed"], stats["inngest"]["failed"]) == (3, 1)
    assert stats["inngest"]["success_rate"] == pytest.approx(0.75)
    cost = got[("prcapture_cost", (("kind", "actual"),))]
    assert cost == pytest.approx(float(stats["cost"]["actual"]))


def explained(conn, query: str, params=()) -> str:
    """The plan of a statement, as text."""
    return "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + query, params))


def test_a_scrape_reads_rollups_not_history(store, database_url, job_views):
    """What /metrics and bin/jobs stats read: job_totals and a window of job_rollups by
    their keys, the live jobs and the newest failures by their indexes, the lag from the
    views' position: never capture_jobs' finished rows or the whole log."""
    ended_jobs(store, "inngest", failed=1, completed=3)
    views.catch_up(store, job_views)
    with store.database("reads").connection() as conn:
        conn.execute("SET enable_seqscan = off")
        whole = explained(conn, "SELECT * FROM lane_stats_window(now() - interval '1 hour')")
        window = explained(
            conn,
            "SELECT * FROM job_rollups "
            "WHERE bucket >= date_bin('5 minutes', now() - interval '1 hour', 'epoch')",
        )
        live = explained(
            conn,
            "SELECT count(*) FROM capture_jobs WHERE status IN "
            "('queued', 'routed', 'dispatched', 'retry_scheduled', 'running')",
        )
        failures = explained(conn, reads.RECENT_FAILURES, (20,))
        conn.execute("RESET enable_seqscan")
        lag = explained(conn, reads.LAG, (10**9,))
    assert "Function Scan" in whole  # a SQL function: the statements in it are looked at
    assert "job_rollups_pkey" in window
    assert "capture_jobs_status" in live
    assert "capture_jobs_failures" in failures
    assert "jobs_events_notification_id_idx" in lag


SUMMARY = "inngest: over 20% of attempts failed in the last hour"


def test_an_incident_moves_the_counters_and_fires_the_rate_rule(
    store, database_url, job_views, tmp_path
):
    """Two real scrapes, an hour apart, with failures between: promtool evaluates the
    ErrorRateHigh rule over them as Prometheus would."""
    ended_jobs(store, "inngest", failed=0, completed=10)
    views.catch_up(store, job_views)
    before = samples(render(look(store)))
    ended_jobs(store, "inngest", failed=6, completed=2, now=NOW + timedelta(minutes=30))
    views.catch_up(store, job_views)
    after = samples(render(look(store)))
    inngest = (("job_type", "pr-reviews"), ("lane", "inngest"))
    failed = "prcapture_job_attempts_failed_total"
    done = "prcapture_jobs_completed_total"
    assert (before[(failed, inngest)], after[(failed, inngest)]) == (0, 6)
    assert (before[(done, inngest)], after[(done, inngest)]) == (10, 12)
    series = [
        {
            "series": f'{name}{{lane="inngest",job_type="pr-reviews"}}',
            # one scrape a minute: `before` for an hour, then `after` for the next
            "values": f"{before[(name, inngest)]:.0f}x60 {after[(name, inngest)]:.0f}x60",
        }
        for name in (failed, done)
    ]
    test = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "50m", "alertname": "ErrorRateHigh", "exp_alerts": []},
                    {
                        "eval_time": "115m",
                        "alertname": "ErrorRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"lane": "inngest", "severity": "page"},
                                "exp_annotations": {"summary": SUMMARY},
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "incident.test.yml"
    path.write_text(yaml.safe_dump(test))
    check = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_projection_lag_counts_events_not_yet_projected(store, database_url, job_views):
    ended_jobs(store, "local", failed=0, completed=1)
    assert reads.projection_lag(store.database("reads")) > 0
    views.catch_up(store, job_views)
    assert reads.projection_lag(store.database("reads")) == 0


def test_an_alert_fires_and_resolves_once_each_after_its_hold(store, database_url, receiver):
    state = alerts.AlertState(store.database("alerts"))
    health = look(store)
    health.down = {"inngest": "3 dispatches failed"}
    (fired,) = state.update(alerts.firing(health), NOW)
    assert (fired.rule, fired.key, fired.status) == ("LaneDown", "inngest", "firing")
    assert state.update(alerts.firing(health), NOW + timedelta(minutes=1)) == []  # still open
    with httpx.Client() as client:
        # Within LaneDown's 5-minute hold: nothing sent yet.
        assert state.notify(receiver.url, NOW + timedelta(minutes=1), client) == 0
        later = NOW + timedelta(minutes=6)
        assert state.notify(receiver.url, later, client) == 1
        assert state.notify(receiver.url, later, client) == 0  # once
        health.down = {}
        (resolved,) = state.update(alerts.firing(health), later)
        assert resolved.status == "resolved"
        assert state.notify(receiver.url, later, client) == 1
    assert [(g["alert"], g["status"]) for g in receiver.got] == [
        ("LaneDown", "firing"),
        ("LaneDown", "resolved"),
    ]
    assert "3 dispatches failed" in receiver.got[0]["detail"]


def test_a_blip_shorter_than_the_hold_is_never_notified(store, database_url, receiver):
    state = alerts.AlertState(store.database("alerts"))
    health = look(store)
    health.stuck = ["a-job"]
    state.update(alerts.firing(health), NOW)
    health.stuck = []
    state.update(alerts.firing(health), NOW + timedelta(minutes=2))
    with httpx.Client() as client:
        assert state.notify(receiver.url, NOW + timedelta(hours=1), client) == 0
    assert receiver.got == []


def test_a_failing_webhook_is_tried_again_until_it_takes(store, database_url, caplog):
    r = Receiver(codes=[500])
    try:
        state = alerts.AlertState(store.database("alerts"))
        health = look(store)
        health.stuck = ["job-1"]
        state.update(alerts.firing(health), NOW)
        later = NOW + timedelta(minutes=11)
        with httpx.Client() as client:
            assert state.notify(r.url, later, client) == 0
            assert state.notify(r.url, later, client) == 1
        assert [g["alert"] for g in r.got] == ["JobsStuck"]
        assert "s3cr3t" not in caplog.text  # the webhook URL is never logged
        assert "tried again next pass" in caplog.text
    finally:
        r.close()


def test_the_sweeper_rolls_a_failing_lane_back_and_alerts(store, database_url, receiver):
    ended_jobs(store, "inngest", failed=8, completed=2)
    env = {
        "DATABASE_URL": database_url,
        "JOBSTORE_AUTO_ROLLBACK": "0.5",
        "JOBSTORE_AUTO_ROLLBACK_MIN": "10",
        "CAPTURE_ALERT_WEBHOOK": receiver.url,
    }
    result = CliRunner().invoke(jobs, ["sweep", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert "8 of 10 attempts failed" in doc["rolled_back"]["inngest"]
    fired = {(a["alert"], a["key"]) for a in doc["alerts"]}
    assert {("ErrorRateHigh", "inngest"), ("LaneDown", "inngest")} <= fired
    (stopped,) = [e for e in store.rollout_history() if type(e).__name__ == "LaneStopped"]
    assert (stopped.lane, stopped.automatic) == ("inngest", True)
    assert "automatic rollback" in stopped.reason
    again = CliRunner().invoke(jobs, ["sweep", "--json"], env=env)
    doc = json.loads(again.output.strip().splitlines()[-1])
    assert doc["rolled_back"] == {}
    assert doc["alerts"] == []
    new = Dispatcher.open(store, httpx.Client()).submit(
        JobSpec.create("pr-reviews", "acme/new", days=1), NOW
    )
    assert new.job.lane != "inngest"


def test_oversee_without_a_webhook_still_keeps_the_state(store, database_url):
    seen = oversee(
        Dispatcher(store, {}),
        PostgresBudgets(store.database("budgets")),
        Registry(store.database("registry")),
        NOW,
        None,
        httpx.Client(),
    )
    assert seen.notified == 0
    assert seen.stopped == []
    assert Secret("x").reveal() == "x"


RULES_FILE = Path(str(resources.files("capture.ops").joinpath("alerts.rules.yml")))


def test_the_rules_file_passes_promtool():
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES_FILE)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "9 rules found" in check.stdout


def test_the_rules_file_and_the_sweeper_judge_alike():
    rules = {r["alert"]: r for r in yaml.safe_load(RULES_FILE.read_text())["groups"][0]["rules"]}
    assert set(rules) == {rule.name for rule in alerts.RULES}
    for rule in alerts.RULES:
        minutes = int(rules[rule.name]["for"].removesuffix("m"))
        assert timedelta(minutes=minutes) == rule.hold, rule.name
    assert f"< {alerts.BUDGET_LOW:.2f}" in rules["BudgetLow"]["expr"]
    high = rules["ErrorRateHigh"]["expr"]
    assert f"> {alerts.ERROR_RATE:.2f}" in high
    assert f">= {alerts.MIN_ATTEMPTS}" in high
    metrics = set(re.findall(r"prcapture_[a-z_]+", " ".join(r["expr"] for r in rules.values())))
    health = alerts.Health(at=NOW, lanes={lane: _empty() for lane in alerts_lanes()})
    families = list(text_string_to_metric_families(render(health).decode()))
    exported = {f.name for f in families} | {f"{f.name}_total" for f in families}
    assert metrics <= exported, metrics - exported


def alerts_lanes():
    from jobstore.routing import LANES

    return LANES


def _empty() -> dict:
    keys = ("pending", "processing", "completed", "failed", "cancelled", "success_rate")
    timing = ("wait_p50_s", "wait_p95_s", "run_p50_s", "run_p95_s")
    return dict.fromkeys(keys + timing)


def test_the_dashboards_series_count_depth_throughput_and_timings(store, database_url, job_views):
    now = datetime.now(UTC)
    t0 = now - timedelta(minutes=40)
    waiting = JobSpec.create("pr-reviews", "acme/waiting", days=1)
    store.enqueue(waiting, t0, route=Route("local", "explicit", "test"))
    done = JobSpec.create("pr-reviews", "acme/done", days=1)
    job_id = store.enqueue(done, t0, route=Route("local", "explicit", "test")).job_id
    assert store.claim(job_id, "w1", t0 + timedelta(minutes=5)).won
    store.complete(job_id, 1, now=t0 + timedelta(minutes=15))
    views.catch_up(store, job_views)
    rows = [
        r
        for r in reads.series(store.database("reads"), now - timedelta(hours=1))
        if r["lane"] == "local"
    ]
    finished = [r for r in rows if r["finished"]]
    assert len(finished) == 1
    assert finished[0]["run_s"] == 600  # in the bucket it ended in
    started = [r for r in rows if r["wait_s"] is not None]
    assert [r["wait_s"] for r in started] == [300]  # in the bucket the wait ended in
    assert started[0]["at"] <= t0 + timedelta(minutes=5) < started[0]["at"] + timedelta(minutes=5)
    assert (
        finished[0]["at"] <= t0 + timedelta(minutes=15) < finished[0]["at"] + timedelta(minutes=5)
    )
    before = [r["depth"] for r in rows if r["at"] + timedelta(minutes=5) <= t0]
    assert set(before) <= {0}
    last = rows[-1]
    assert last["depth"] == 1  # acme/waiting never started
    step = timedelta(minutes=5)
    between = [r["depth"] for r in rows if t0 < r["at"] + step <= t0 + step]
    assert between == [2]  # the bucket ending in the first five minutes: both waiting
