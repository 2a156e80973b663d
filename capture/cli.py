"""`bin/run-job`: claims one job's current attempt and runs it (the same code every lane runs)."""

from __future__ import annotations

import logging
import os
import socket

import click

from capture import config as capture_config
from capture.errors import ConfigError as CaptureConfigError
from capture.github.client import GitHub, connect
from capture.runner import Result, run_job
from capture.storage import Storage
from jobstore.clikit import Command, errors, session

EXIT = {"completed": 0, "rescheduled": 0, "waiting": 0, "lost": 0, "failed": 1}


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_one(
    ctx: click.Context, job_id: str, worker: str, lane: str | None, attempt: int | None
) -> Result:
    """Runs one job with the environment's GitHub settings; shared by the lane consumers."""
    s = session(ctx)
    try:
        settings = capture_config.load()
    except CaptureConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with errors():
        store = s.store
        store.get(job_id)  # an unknown id is bad input: exit 2 before anything is written
        storage = Storage(s.url)
        try:
            return run_job(
                store,
                job_id,
                worker=worker,
                lane=lane,
                attempt=attempt,
                storage=storage,
                settings=settings,
                github=lambda realtime: GitHub(connect(settings), settings, realtime=realtime),
            )
        finally:
            storage.close()


@click.command(cls=Command)
@click.option("--job-id", required=True, help="The job to run.")
@click.option("--attempt", type=click.IntRange(1), help="Run only if the job is on this attempt.")
@click.option(
    "--lane",
    type=click.Choice(["inngest", "github_actions", "local"]),
    help="The lane this worker belongs to (recorded in Started).",
)
@click.option("--worker-id", default=default_worker, show_default="host:pid")
def run_job_command(job_id: str, attempt: int | None, lane: str | None, worker_id: str) -> None:
    """Claim and run one job; exit 0 done or rescheduled, 1 failed, 2 bad input."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_one(click.get_current_context(), job_id, worker_id, lane, attempt)
    line = f"job {result.job_id}: {result.outcome}"
    if result.detail:
        line += f" ({result.detail})"
    if result.outcome == "completed":
        line += f", {result.items} items, {result.points} points"
    click.echo(line, err=result.outcome == "failed")
    raise SystemExit(EXIT[result.outcome])
