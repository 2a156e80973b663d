"""`bin/bench`: benchmarks, each against a peer in the same run; a table and a JSON line."""

from __future__ import annotations

import time

import click

from capture.cli.common import Group, version_option
from capture.cli.logs import log_options
from devtools.bench.api import api
from devtools.bench.budget import budget
from devtools.bench.capture import capture
from devtools.bench.fleet import fleet
from devtools.bench.freshness import freshness
from devtools.bench.history import history
from devtools.bench.latency import latency
from devtools.bench.lifecycle import lifecycle
from devtools.bench.planner import planner
from devtools.bench.store import projections, store
from devtools.bench.webhooks import webhooks
from devtools.bench.worker import worker

__all__ = ["bench"]


@click.group(cls=Group)
@version_option
@log_options
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmarks: each prints a table and, with --json, a JSON line last; how long it took
    goes to stderr when it ends."""
    ctx.meta["bench.started"] = time.monotonic()


@bench.result_callback()
@click.pass_context
def took(ctx: click.Context, *_: object, **__: object) -> None:
    seconds = time.monotonic() - ctx.meta["bench.started"]
    click.echo(f"bin/bench {ctx.invoked_subcommand} took {seconds:.0f} s", err=True)


for command in (
    store,
    projections,
    capture,
    latency,
    freshness,
    lifecycle,
    history,
    budget,
    api,
    worker,
    planner,
    webhooks,
    fleet,
):
    bench.add_command(command)
