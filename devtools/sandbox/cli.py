"""`bin/fake-github`: the sandbox as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shlex
import signal
import threading
from typing import Any

import click

from capture.cli.common import Command, errors, version_option
from capture.cli.logs import log_options
from devtools.playground import ROOT, Playground, script_env
from devtools.sandbox.data import World
from devtools.sandbox.faults import parse_fault
from devtools.sandbox.server import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox
from jobstore import db
from jobstore.settings import load

WORKFLOWS = ROOT / ".github" / "workflows"
REPO = re.compile(r"(?P<name>[A-Za-z0-9-]+/[A-Za-z0-9._-]+):(?P<pulls>\d+)")


class RepoSpec(click.ParamType):
    name = "owner/name:PULLS"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        match = REPO.fullmatch(str(value))
        if not match or not 0 <= int(match["pulls"]) <= 100_000:
            self.fail(f"{value!r} is not owner/name:PULLS (PULLS 0..100000)", param, ctx)
        return match["name"], int(match["pulls"])


class FaultSpec(click.ParamType):
    name = "TARGET:KIND[:N|:Ns|:pr=N]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        from datetime import UTC, datetime

        try:
            parse_fault(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class WorkflowSpec(click.ParamType):
    """REPO:FILE:INPUT,INPUT, e.g. acme/ops:capture-job.yml:job_id,attempt."""

    name = "repo:file:inputs"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        repo, _, rest = str(value).partition(":")
        file, _, inputs = rest.partition(":")
        if repo.count("/") != 1 or not file.endswith((".yml", ".yaml")):
            self.fail(f"{value!r} is not REPO:FILE:INPUTS like acme/ops:run.yml:job_id", param, ctx)
        return f"{repo}:{file}:{inputs}"


def build(
    repos: list[tuple[str, int]],
    days: int,
    seed: int,
    options: Options,
    faults: list[str],
    enterprise: bool,
    workflows: list[str],
) -> Sandbox:
    world = World(seed)
    for name, pulls in repos:
        world.add_repository(name, pulls, days)
    sandbox = Sandbox(world, options)
    sandbox.faults.add(*faults)
    sandbox.actions.enterprise = enterprise
    for spec in workflows:
        repo, file, inputs = spec.split(":", 2)
        sandbox.register_workflow(
            repo,
            file,
            {n: {"required": True} for n in inputs.split(",") if n},
            run_name=f"{file} "
            + " ".join(f"${{{{ inputs.{n} }}}}" for n in inputs.split(",") if n),
        )
    return sandbox


@click.command(cls=Command)
@version_option
@log_options
@click.option(
    "--repo",
    "repos",
    multiple=True,
    type=RepoSpec(),
    default=["acme/widgets:200"],
    show_default=True,
    help="A repository and its number of pull requests.",
)
@click.option(
    "--days",
    default=730,
    show_default=True,
    type=click.IntRange(1, 3650),
    help="Pull requests are spread over this many days back from now.",
)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    default=[DEFAULT_TOKEN],
    show_default=True,
    help="A token the sandbox accepts.",
)
@click.option(
    "--budget",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 10**7),
    help="Points per hour for each token.",
)
@click.option(
    "--event-key", "event_keys", multiple=True, default=[DEFAULT_EVENT_KEY], show_default=True
)
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0, 60_000))
@click.option("--node-latency-us", default=0.0, show_default=True, type=click.FloatRange(0, 10_000))
@click.option("--timeout-nodes", default=300_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--node-count",
    default="strict",
    show_default=True,
    type=click.Choice(["strict", "lenient"]),
    help="How nodes(ids: [...]) counts towards cost and the node limit: strict multiplies "
    "what is under it by the number of ids, lenient does not (GitHub's docs are silent).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    type=FaultSpec(),
    help="A scripted failure, e.g. graphql:502:3 or graphql:secondary:30s.",
)
@click.option(
    "--edit-bumps-pr",
    default="yes",
    show_default=True,
    type=click.Choice(["yes", "no"]),
    help="Whether editing or deleting a comment or review moves its pull request's updatedAt "
    "(GitHub's docs do not say).",
)
@click.option("--enterprise", is_flag=True, help="Answer 400 to return_run_details (older GHES).")
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    type=WorkflowSpec(),
    help="REPO:FILE:INPUT,INPUT another workflow that can be dispatched (this checkout's "
    "workflows are registered for --actions-repo).",
)
@click.option(
    "--actions-repo",
    default="acme/ops",
    show_default=True,
    help="The repository this checkout's .github/workflows are registered for.",
)
@click.option(
    "--execute",
    is_flag=True,
    help="Also run what is dispatched, as GitHub and Inngest would: workflow runs execute "
    "this checkout's workflows, Inngest events call the capture function served here. "
    "Uses the job store (DATABASE_URL, else the embedded server).",
)
def fake_github(
    repos: tuple[tuple[str, int], ...],
    days: int,
    seed: int,
    host: str,
    port: int,
    tokens: tuple[str, ...],
    budget: int,
    event_keys: tuple[str, ...],
    latency_ms: float,
    node_latency_us: float,
    timeout_nodes: int,
    node_count: str,
    faults: tuple[str, ...],
    edit_bumps_pr: str,
    enterprise: bool,
    workflows: tuple[str, ...],
    actions_repo: str,
    execute: bool,
) -> None:
    """Serve a sandbox GitHub (GraphQL, REST, Actions) and Inngest Event API until stopped.

    Prints one JSON line with its URLs, then the `export` lines that point the scripts at
    it. With --execute it also runs what the lanes are sent, so both lanes can be tried
    by hand with bin/enqueue."""
    options = Options(
        tokens=dict.fromkeys(tokens, budget),
        event_keys=set(event_keys),
        latency=latency_ms / 1000,
        node_latency=node_latency_us / 1e6,
        timeout_nodes=timeout_nodes,
        node_count=node_count,
    )
    sandbox = build(list(repos), days, seed, options, list(faults), enterprise, list(workflows))
    sandbox.world.edit_bumps_pr = edit_bumps_pr == "yes"
    try:
        if execute:
            served = playground(sandbox, host, port, actions_repo, tokens[0], event_keys[0])
        else:
            sandbox.load_workflows(WORKFLOWS, actions_repo)
            served = sandbox.serve(host, port)
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(json.dumps({**served.urls, "token": tokens[0], "event_key": event_keys[0]}))
    env = script_env(served.url, tokens[0], event_keys[0], actions_repo)
    if execute:
        env["DATABASE_URL"] = served.database_url
    click.echo("# point the scripts at this sandbox (in another shell):")
    click.echo("\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items()))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    served.stop()


class Executing:
    """A sandbox served with its lanes executed (a Playground without worker or sweeper)."""

    def __init__(self, running: Playground) -> None:
        self.running = running
        self.url = running.url
        self.urls = running.sandbox_urls
        self.database_url = running.database_url

    def stop(self) -> None:
        self.running.close()


def playground(
    sandbox: Sandbox, host: str, port: int, actions_repo: str, token: str, event_key: str
) -> Executing:
    with errors():
        url = db.database_url(load())
    running = Playground(
        sandbox.world,
        url,
        sandbox=sandbox,
        address=(host, port),
        actions_repository=actions_repo,
        token=token,
        event_key=event_key,
        local_worker=False,
        sweep_every=None,
    )
    return Executing(running.start(lambda env: None))
