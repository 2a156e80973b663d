"""Both lanes on one machine: the sandbox as a real local server playing GitHub, the
Actions runner (executing the repository's workflow files) and Inngest (Event API plus an
executor calling the served function over signed HTTP), with a local worker and the
sweeper in background threads. `make demo` and the end-to-end tests run on it."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import jobstore
from capture import settings as capture
from capture.attempt import Runner
from capture.inngest_function import attempt_runner, create_app
from capture.jobtypes import capable
from capture.serving import Server
from capture.settings import InngestSettings
from capture.worker import work
from devtools.sandbox import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox, World
from devtools.sandbox.actions_runner import ActionsRunner
from devtools.sandbox.inngest_executor import Executor
from jobstore.dispatcher import Dispatcher
from jobstore.settings import load
from jobstore.store import JobStore
from jobstore.sweeper import sweep
from jobstore.wakeup import Wakeup

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def script_env(url: str, token: str, event_key: str, actions_repository: str) -> dict[str, str]:
    """What the scripts need to use a sandbox served at `url` as GitHub and Inngest."""
    return {
        "GITHUB_TOKEN": token,
        "GITHUB_API_URL": url,
        "GITHUB_GRAPHQL_URL": f"{url}/graphql",
        "INNGEST_EVENT_KEY": event_key,
        "INNGEST_EVENT_API_BASE_URL": url,
        "CAPTURE_ACTIONS_REPOSITORY": actions_repository,
    }


class Playground:
    """Start with `start(apply_env)`; `close()` stops everything in reverse order."""

    def __init__(
        self,
        world: World,
        database_url: str,
        *,
        root: Path = ROOT,
        extra_env: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        sweep_every: float | None = 0.5,
        local_worker: bool = True,
        sandbox: Sandbox | None = None,
        address: tuple[str, int] = ("127.0.0.1", 0),
        actions_repository: str = "acme/ops",
        token: str = DEFAULT_TOKEN,
        event_key: str = DEFAULT_EVENT_KEY,
    ) -> None:
        self.token, self.event_key = token, event_key
        self.sandbox = sandbox or Sandbox(world, Options(tokens={DEFAULT_TOKEN: 1_000_000}))
        self.address = address
        self.actions_repository = actions_repository
        self.database_url = database_url
        self.root = root
        self.extra_env = dict(extra_env or {})
        self.variables = dict(variables or {})
        self.sweep_every = sweep_every
        self.local_worker = local_worker
        self.signing_key = "signkey-sandbox-" + secrets.token_hex(32)
        self.stop = threading.Event()
        self._closers: list[Callable[[], Any]] = []
        self.env: dict[str, str] = {}

    def start(self, apply_env: Callable[[Mapping[str, str]], None]) -> Playground:
        sandbox = self.sandbox
        sandbox.load_workflows(self.root / ".github" / "workflows", self.actions_repository)
        served = sandbox.serve(*self.address)
        self._closers.append(served.stop)
        self.url = served.url
        self.sandbox_urls = served.urls
        self.env = {
            "DATABASE_URL": self.database_url,
            **script_env(self.url, self.token, self.event_key, self.actions_repository),
            "INNGEST_SIGNING_KEY": self.signing_key,
            **self.extra_env,
        }
        apply_env(self.env)  # the scripts (and the Inngest function) read these
        settings = load(self.env)
        self.store = store = jobstore.open_store(settings, url=self.database_url)
        self._closers.append(store.close)

        # GitHub Actions: the runner executes the real workflow files' run: steps.
        bin_dir = str(Path(sys.executable).parent)
        machine = machine_env()
        self.runner = ActionsRunner(
            self.root / ".github" / "workflows",
            self.root,
            secrets={"DATABASE_URL": self.database_url, "CAPTURE_GITHUB_TOKEN": self.token},
            base_env={**machine, "PATH": f"{bin_dir}:{machine.get('PATH', '')}"},
            server_url=self.url,
            variables=self.variables,
            on_finish=sandbox.actions.finish,
        )
        sandbox.actions.handlers.callbacks.append(self.runner)

        # Inngest: the function served over HTTP; the executor calls it, signed.
        capture_settings = capture.load(self.env)
        runner = Runner(store, capture_settings)
        self._closers.append(runner.close)
        run_attempt = attempt_runner(runner, "inngest-sandbox")
        app, fn = create_app(InngestSettings.load(self.env), run_attempt)
        server = Server(app, "127.0.0.1", 0).start()
        self._closers.append(server.stop)
        self.serve_url = f"{server.url}/api/inngest"
        self.executor = Executor(self.serve_url, fn.get_id(), self.signing_key)
        sandbox.inngest.handlers.callbacks.append(self.executor)
        self._closers.append(sandbox.drain)

        client = httpx.Client(timeout=30)
        self._closers.append(client.close)
        self.dispatcher = Dispatcher.open(store, client, capable)
        if self.local_worker:
            self._local(store, Runner(store, capture_settings))
        if self.sweep_every:
            self._thread(self._sweep_forever)
        return self

    def _local(self, store: JobStore, runner: Runner) -> None:
        wakeup = Wakeup(self.database_url, "local")
        self._closers.append(wakeup.close)
        self._closers.append(runner.close)
        self._thread(
            lambda: work(
                store,
                "local",
                "sandbox-local",
                runner.run_claimed,
                now=lambda: datetime.now(UTC),
                wakeup=wakeup,
                watch=True,
                poll=0.5,
                stop=self.stop,
            )
        )

    def _sweep_forever(self) -> None:
        assert self.sweep_every is not None
        while not self.stop.wait(self.sweep_every):
            try:
                sweep(self.dispatcher, datetime.now(UTC))
            except Exception:  # one bad pass must not end the sweeper (it would go silent)
                log.exception("sweep failed; trying again")

    def _thread(self, target: Callable[[], Any]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._closers.append(lambda: thread.join(timeout=10))

    def drain(self) -> None:
        self.sandbox.drain()

    def close(self) -> None:
        self.stop.set()
        for closer in reversed(self._closers):
            closer()


def machine_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a child process started for someone else (a sandbox runner's step) inherits
    from this machine: PATH and the like, never this process's secrets."""
    env = os.environ if env is None else env
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    return {k: env[k] for k in keep if k in env}
