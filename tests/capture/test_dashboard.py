"""The dashboard in a real headless Chromium (the system's package, driven by Playwright):
after a sandbox run through the API and a local worker, the page loads with no console
errors, its charts draw lines from that run, a failure opens its audit trail, and a
screenshot is kept in .artifacts/dashboard.png."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import sync_playwright

from capture.api.app import ApiSettings, Context, create_app
from capture.cli.run_job import run_job_command
from capture.freshness.registry import Registry
from capture.freshness.settings import load_freshness
from capture.serving import Server
from jobstore.settings import load

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
TOKEN = "dashboard-token-0123456789"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def dashboard(store, database_url, served):
    store.settings = replace(store.settings, lanes=load(served.env).lanes)
    ctx = Context(store, load_freshness({}))
    server = Server(create_app(ctx, ApiSettings((load_token(),))), "127.0.0.1", 0).start()
    yield server
    server.stop()
    ctx.close()


def load_token():
    from jobstore.secret import Secret

    return Secret(TOKEN)


def sandbox_run(base: str, served, database_url: str) -> None:
    """Tracked repositories (one bootstrapping), a sweeper's sample of the fleet, and
    captures through the API on the local lane, one of a repository GitHub does not have
    (it fails), run by a real worker against the sandbox."""
    from capture.cli.track import track
    from jobstore import Database

    env = {**served.env, "DATABASE_URL": database_url}
    for repository, tier in (("acme/widgets", "hot"), ("acme/gadgets", "cold")):
        done = CliRunner().invoke(track, ["add", repository, "--tier", tier], env=env)
        assert done.exit_code == 0, done.output
    registry = Registry(Database(database_url, "test"))
    registry.sample(1, datetime.now(UTC) - timedelta(hours=1))
    registry.sample(0, datetime.now(UTC))
    registry.db.close()
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}) as api:
        for repository, days in (("acme/widgets", 1), ("acme/widgets", 2), ("acme/missing", 1)):
            body = {"job_type": "pr-reviews", "repository": repository, "days": days}
            answer = api.post("/v1/captures", json={**body, "lane": "local"})
            assert answer.status_code in (200, 201), answer.text
    env = {**served.env, "DATABASE_URL": database_url}
    result = CliRunner().invoke(run_job_command, ["--lane", "local"], env=env)
    assert result.exit_code in (0, 1), result.output


def test_the_dashboard_shows_a_sandbox_run(dashboard, served, database_url):
    assert CHROMIUM, "chromium is not installed: apt-get install chromium (.ci/run does)"
    sandbox_run(dashboard.url, served, database_url)
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{dashboard.url}/?access_token={TOKEN}")
            page.wait_for_selector("#throughput path.line", state="attached", timeout=15_000)
            assert "access_token" not in page.url  # kept out of the address bar
            lanes = page.inner_text("#lanes")
            assert "local" in lanes
            assert "done" in lanes
            for chart in ("depth", "throughput", "wait", "run"):
                assert page.locator(f"#{chart} path.line").count() == 3, chart
            assert page.locator("#cost rect").count() == 2
            page.wait_for_selector("#failures tr.click", timeout=15_000)
            assert "acme/missing" in page.inner_text("#failures")
            page.wait_for_selector("#audit th", timeout=15_000)
            trail = page.inner_text("#audit")
            assert "Queued" in trail
            assert "Failed" in trail
            assert "repository=acme/missing" in trail  # key=value, as bin/jobs show
            assert '":' not in page.inner_text("#audit td.wrap >> nth=0")  # not raw JSON
            fleet = page.inner_text("#fleet")
            assert "tracked" in fleet
            assert "1 · 0 · 1" in fleet  # hot · warm · cold
            assert "0 of 2" in fleet  # whose whole history is stored (none bootstrapped yet)
            assert page.locator("#breached path.line").count() == 1
            assert page.inner_text("#error") == ""
            assert not overflowing(page, "#budgets"), "the budget table overflows its card"
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            # the lanes over another window: read from the rollups on the server
            with page.expect_response(lambda r: "window=all" in r.url) as answer:
                page.select_option("#window", "all")
            assert answer.value.json()["window"] == "all"
            assert answer.value.json()["lanes"]["local"]["failed"] >= 1
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.wait_for_timeout(300)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
            chart_width = float(page.get_attribute("#breached", "viewBox").split()[2])
            assert chart_width <= 390, "the charts were not redrawn for the phone's width"
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            page.locator("#audit").screenshot(path=str(ARTIFACTS / "dashboard-phone-audit.png"))
        finally:
            browser.close()
    assert problems == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def overflowing(page, selector: str) -> bool:
    """Whether the element is wider than the card that holds it."""
    return page.evaluate(
        "(s) => { const t = document.querySelector(s); "
        "return t.scrollWidth > t.parentElement.clientWidth + 1; }",
        selector,
    )


def test_the_page_without_a_token_is_refused(dashboard):
    answer = httpx.get(f"{dashboard.url}/")
    assert answer.status_code == 401
