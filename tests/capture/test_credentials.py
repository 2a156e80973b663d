"""GitHub App installations, a pool of credentials and one shared budget, against the
sandbox (a key pair generated here) and the real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from capture.errors import RateLimited
from capture.github.app import GitHubApp
from capture.github.budgets import MemoryBudgets, Observed
from capture.github.client import GitHubFactory, credential_problem
from capture.github.credentials import Credential, Pool, pool_for
from capture.github.ledger import PostgresBudgets
from capture.settings import CaptureSettings, load
from devtools.sandbox import Options, Sandbox, World
from devtools.sandbox.apps import Installation
from jobstore.db import Database
from jobstore.errors import ConfigError
from jobstore.secret import Secret
from tests.capture.rig import Rig
from tests.sandbox_fixtures import NOW

APP_ID = 4242
BASE = "http://sandbox.invalid"


def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def keys():
    return key_pair()


@pytest.fixture(autouse=True)
def fresh_tokens():
    """Installation tokens are cached per process; each test has a sandbox of its own."""
    from capture.github import app

    app._TOKENS.clear()
    yield
    app._TOKENS.clear()


@pytest.fixture
def world():
    world = World(seed=3, now=NOW)
    world.add_repository("acme/widgets", 120, 200)
    world.add_repository("octo/tools", 20, 200)
    return world


@pytest.fixture
def app_sandbox(world, clock, keys):
    sandbox = Sandbox(
        world,
        Options(
            tokens={"ghp_alice1": 5000, "ghp_alice2": 5000, "ghp_bob": 5000},
            users={"ghp_alice1": "alice", "ghp_alice2": "alice", "ghp_bob": "bob"},
        ),
        clock=clock,
    )
    sandbox.apps.register(APP_ID, keys[1])
    sandbox.apps.install(Installation(11, APP_ID, "acme"))
    sandbox.apps.install(Installation(12, APP_ID, "octo"))
    return sandbox


def settings_with(keys, **more) -> CaptureSettings:
    return CaptureSettings(
        api_url=BASE,
        graphql_url=f"{BASE}/graphql",
        app_id=APP_ID,
        app_key=Secret(keys[0]),
        **more,
    )


def client_for(sandbox) -> httpx.Client:
    return httpx.Client(transport=sandbox.transport())


def test_the_app_mints_an_installation_token_found_by_owner(app_sandbox, clock, keys):
    app = GitHubApp(APP_ID, Secret(keys[0]), client_for(app_sandbox), BASE, clock)
    assert app.installation_for("acme/widgets") == 11
    assert app.installation_for("nobody/else") is None
    minted = app.token(11)
    assert minted.token.reveal().startswith("ghs_")
    assert minted.expires_at == clock() + timedelta(hours=1)
    assert app.token(11) is minted  # cached
    other = GitHubApp(APP_ID, Secret(keys[0]), client_for(app_sandbox), BASE, clock)
    assert other.token(11) is minted  # shared by every job of the process
    clock.advance(minutes=56)  # under five minutes left: renewed
    assert app.token(11).token.reveal() != minted.token.reveal()
    assert app_sandbox.apps.minted == 2


def test_the_installation_of_a_transferred_repository_is_found_through_githubs_301(
    app_sandbox, world, clock, keys
):
    world.transfer_repository("acme/widgets", "octo")
    app = GitHubApp(APP_ID, Secret(keys[0]), client_for(app_sandbox), BASE, clock)
    assert app.installation_for("acme/widgets") == 12  # the old name: now octo's repository
    world.transfer_repository("octo/tools", "solo")
    fresh = GitHubApp(APP_ID, Secret(keys[0]), client_for(app_sandbox), BASE, clock)
    assert fresh.installation_for("octo/tools") is None  # moved where the app is not installed


def test_the_sandbox_checks_the_jwt_as_github_does(app_sandbox, clock, keys):
    client = client_for(app_sandbox)
    good = GitHubApp(APP_ID, Secret(keys[0]), client, BASE, clock).jwt()
    url = f"{BASE}/app/installations/11/access_tokens"
    assert client.post(url, headers={"authorization": f"Bearer {good}"}).status_code == 201
    stranger = GitHubApp(APP_ID, Secret(key_pair()[0]), client, BASE, clock).jwt()
    assert client.post(url, headers={"authorization": f"Bearer {stranger}"}).status_code == 401
    clock.advance(minutes=11)  # the JWT expired
    assert client.post(url, headers={"authorization": f"Bearer {good}"}).status_code == 401
    assert client.post(url, headers={"authorization": "Bearer x.y.z"}).status_code == 401


def test_an_expired_installation_token_is_refused(app_sandbox, clock, keys):
    client = client_for(app_sandbox)
    token = GitHubApp(APP_ID, Secret(keys[0]), client, BASE, clock).token(11).token.reveal()
    auth = {"authorization": f"Bearer {token}"}
    assert client.get(f"{BASE}/repos/acme/widgets", headers=auth).status_code == 200
    clock.advance(hours=1, seconds=1)
    assert client.get(f"{BASE}/repos/acme/widgets", headers=auth).status_code == 401


def test_personal_tokens_of_one_user_share_one_budget(app_sandbox):
    client = client_for(app_sandbox)
    remaining = {}
    for token in ("ghp_alice1", "ghp_alice2", "ghp_bob"):
        answer = client.get(
            f"{BASE}/repos/acme/widgets", headers={"authorization": f"Bearer {token}"}
        )
        remaining[token] = int(answer.headers["x-ratelimit-remaining"])
    assert remaining == {"ghp_alice1": 4999, "ghp_alice2": 4998, "ghp_bob": 4999}
    pool = pool_for(
        CaptureSettings(api_url=BASE, tokens=(Secret("ghp_alice1"), Secret("ghp_alice2"))),
        client,
        MemoryBudgets(),
        lambda: NOW,
    )
    assert {c.key for c in pool.credentials} == {"user:alice"}  # one budget, by its user


def test_a_job_over_three_hours_survives_token_expiries(
    app_sandbox, store, database_url, clock, keys
):
    """Each request takes fifteen simulated minutes: the job outlives three installation
    tokens, each renewed before it expired; no request meets a 401."""
    from capture.storage import Storage

    settings = settings_with(keys, batch_size=20, max_items=5000)
    app_sandbox.options.latency = 900.0
    app_sandbox.options.sleep = lambda seconds: clock.advance(seconds=seconds)
    budgets = PostgresBudgets(store.database("budgets"))
    rig = Rig(store, Storage(store.database("storage")), app_sandbox, clock, settings)
    rig._factory = GitHubFactory(
        settings, budgets, transport=app_sandbox.transport(), sleep=rig.sleep, now=clock
    )
    start = clock()
    result = rig.run(rig.enqueue("historical-sync", days=220))
    assert result.outcome == "completed", result
    assert clock() - start > timedelta(hours=3)
    assert app_sandbox.apps.minted >= 3  # two renewals at least
    assert not [e for e in app_sandbox.ledger.entries if e.status == 401]
    rows = {r["credential"]: r for r in budgets.snapshot(clock())}
    assert "installation:11" in rows  # acme's own installation


def test_rate_limited_on_one_credential_moves_to_another_with_headroom(app_sandbox, store, clock):
    """GitHub answers RATE_LIMITED for one user's spent hour that the ledger did not know
    of yet: the query is asked again through another user's token, not the job
    rescheduled to the first one's reset."""
    from capture.storage import Storage

    settings = CaptureSettings(
        api_url=BASE,
        graphql_url=f"{BASE}/graphql",
        tokens=(Secret("ghp_alice1"), Secret("ghp_bob")),
    )
    for token in ("ghp_alice1", "ghp_bob"):  # who each token is, before alice's hour goes
        client_for(app_sandbox).get(f"{BASE}/user", headers={"authorization": f"Bearer {token}"})
    app_sandbox.budgets.window("user:alice", "graphql").used = 5000  # spent elsewhere
    rig = Rig(store, Storage(store.database("storage")), app_sandbox, clock, settings)
    result = rig.run(rig.enqueue("pr-reviews", pr_numbers=[1, 2, 3]))
    assert result.outcome == "completed", result.detail
    limited = [e for e in app_sandbox.ledger.entries if e.error == "RATE_LIMITED"]
    assert len(limited) == 1  # asked once through alice, then through bob
    assert not rig.slept  # nothing waited for alice's reset


def test_the_pool_draws_the_credential_with_most_headroom_and_keeps_the_reserve():
    budgets = MemoryBudgets()
    reset = NOW + timedelta(minutes=30)
    for key, left in (("a", 900), ("b", 4000), ("c", 255)):
        budgets.observe(key, "graphql", Observed(5000, left, reset), None, NOW)
    pool = Pool(
        [Credential(k, k, "token", lambda: "Bearer x") for k in "abc"], budgets, reserve=250
    )
    assert pool.draw("graphql", 10, NOW).credential.key == "b"
    budgets.observe("b", "graphql", Observed(5000, 200, reset), None, NOW)
    assert pool.draw("graphql", 10, NOW).credential.key == "a"
    budgets.observe("a", "graphql", Observed(5000, 240, reset), None, NOW)
    with pytest.raises(RateLimited) as refused:  # what is left is the real-time reserve
        pool.draw("graphql", 10, NOW)
    assert reset <= refused.value.reset_at <= reset + timedelta(seconds=60)  # jittered
    assert pool.draw("graphql", 10, NOW, realtime=True).credential.key in ("a", "c")


def test_the_minute_pace_waits_instead_of_meeting_a_secondary_limit():
    budgets = MemoryBudgets()
    pool = Pool([Credential("a", "a", "token", lambda: "Bearer x")], budgets, pace={"graphql": 100})
    assert pool.draw("graphql", 60, NOW).reservation
    wait = pool.draw("graphql", 60, NOW + timedelta(seconds=10))
    assert wait == NOW + timedelta(minutes=1)  # try again when the minute rolls over
    assert pool.draw("graphql", 60, NOW + timedelta(seconds=61)).reservation


def test_workers_in_parallel_never_spend_the_same_points(database_url):
    """Eight workers, each with its own connection, admit against 100 points left: ten
    requests of ten points get through, never eleven."""
    first = PostgresBudgets(Database(database_url, "budgets"))
    first.observe(
        "installation:1", "graphql", Observed(5000, 100, NOW + timedelta(hours=1)), None, NOW
    )
    admitted, lock = [], threading.Lock()

    def worker() -> None:
        """Asks until refused: a refused worker's own lease is empty, so when every worker
        has stopped no leased point is left unspent (a worker that stopped after a fixed
        number of tries could leave its lease's rest held, and fewer than ten admitted)."""
        ledger = PostgresBudgets(Database(database_url, "budgets"))
        for _ in range(50):
            admission = ledger.admit("installation:1", "graphql", 10, NOW)
            if not admission.admitted:
                break
            with lock:
                admitted.append(admission.reservation)
        ledger.db.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10
    assert first.headroom("installation:1", "graphql", NOW) == 0
    later = NOW + timedelta(minutes=11)  # a crashed worker's reservations expire
    assert first.headroom("installation:1", "graphql", later) == 100
    first.db.close()


def test_configuration_problems_are_named(tmp_path, keys):
    for env, words in (
        ({"GITHUB_APP_ID": "my-app"}, "GITHUB_APP_ID must be the app's number"),
        ({"GITHUB_APP_ID": "1"}, "must hold the app's PEM private key"),
        ({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY_FILE": "/nope"}, "cannot read /nope"),
        (
            {
                "GITHUB_APP_ID": "1",
                "GITHUB_APP_PRIVATE_KEY": keys[0],
                "GITHUB_APP_INSTALLATION_IDS": "x",
            },
            "GITHUB_APP_INSTALLATION_IDS must be numbers",
        ),
    ):
        with pytest.raises(ConfigError, match=words):
            load(env)
    pem = tmp_path / "app.pem"
    pem.write_text(keys[0])
    loaded = load({"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY_FILE": str(pem)})
    assert (loaded.app_id, loaded.has_credentials) == (7, True)
    assert keys[0] not in repr(loaded)
    one_line = load({"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY": keys[0].replace("\n", "\\n")})
    assert one_line.app_key.reveal() == keys[0]


def test_a_wrong_app_key_is_a_problem_named_before_claiming(app_sandbox, keys, clock):
    wrong = settings_with((key_pair()[0], None), installation_ids=(11,))
    problem = credential_problem(wrong, app_sandbox.transport(), clock)
    assert "GITHUB_APP_ID" in problem
    right = settings_with(keys, installation_ids=(11,))
    assert credential_problem(right, app_sandbox.transport(), clock) is None


def test_no_key_or_installation_token_reaches_events_tables_or_logs(
    app_sandbox, store, database_url, clock, keys, caplog
):
    from capture.storage import Storage

    settings = settings_with(keys)
    budgets = PostgresBudgets(store.database("budgets"))
    rig = Rig(store, Storage(store.database("storage")), app_sandbox, clock, settings)
    rig._factory = GitHubFactory(settings, budgets, transport=app_sandbox.transport(), now=clock)
    app_sandbox.faults.add("graphql:502:2")
    assert (
        rig.run(rig.enqueue("pr-reviews", "octo/tools", pr_numbers=[1, 2])).outcome == "completed"
    )
    secrets = [keys[0].splitlines()[1], *app_sandbox.apps.tokens]
    with psycopg.connect(database_url) as conn:
        dumped = " ".join(
            str(row)
            for table in ("jobs_events", "api_budgets", "api_reservations", "rest_etags")
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()
        )
    for secret in secrets:
        assert secret not in dumped
        assert secret not in caplog.text
