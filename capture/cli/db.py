"""`bin/db`: start, stop and inspect the job store's PostgreSQL, and apply migrations."""

from __future__ import annotations

import json
import os
import sys

import click

from capture.cli.common import Group, version_option
from capture.cli.logs import log_options
from jobstore import ConfigError, Database, JobStoreError, Settings, database_url
from jobstore import EmbeddedServer as Server
from jobstore import load_settings as load
from jobstore import migrate as apply_migrations


def fail_cleanly(error: JobStoreError) -> click.ClickException:
    """One line: bad configuration exits 2, a database that cannot run exits 1."""
    if isinstance(error, ConfigError):
        return click.UsageError(str(error))
    return click.ClickException(str(error))


def settings() -> Settings:
    try:
        return load()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(cls=Group)
@version_option
@log_options
def db_group() -> None:
    """Start, stop and inspect the job store's PostgreSQL."""


@db_group.command()
def start() -> None:
    """Start the embedded server under JOBSTORE_HOME (no-op with DATABASE_URL)."""
    s = settings()
    try:
        url = database_url(s)
        applied = apply_migrations(url)
    except JobStoreError as exc:
        raise fail_cleanly(exc) from None
    click.echo(url)
    for name in applied:
        click.echo(f"applied {name}", err=True)


@db_group.command()
def stop() -> None:
    """Stop the embedded server."""
    s = settings()
    if s.database_url:
        raise click.UsageError("DATABASE_URL is set: that server is not ours to stop")
    try:
        stopped = Server(s.home).stop()
    except JobStoreError as exc:
        raise fail_cleanly(exc) from None
    click.echo("stopped" if stopped else "not running")


@db_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Say which PostgreSQL is used and whether it answers; exit 1 when it does not."""
    s = settings()
    if s.database_url:
        info = {
            "mode": "external",
            "running": Database.reachable(s.database_url),
            "url": "DATABASE_URL",
        }
    else:
        server = Server(s.home)
        info = {"mode": "embedded", "running": server.is_running(), "url": server.url()}
        info["home"] = str(server.home)
        info["binaries"] = str(server.binaries)
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            click.echo(f"{key:9} {value}")
    if not info["running"]:
        raise SystemExit(1)


@db_group.command()
def url() -> None:
    """Print the connection URL (starting the embedded server if needed)."""
    try:
        click.echo(database_url(settings()))
    except JobStoreError as exc:
        raise fail_cleanly(exc) from None


@db_group.command()
def migrate() -> None:
    """Apply pending schema files; already applied ones are skipped."""
    try:
        applied = apply_migrations(database_url(settings()))
    except JobStoreError as exc:
        raise fail_cleanly(exc) from None
    click.echo("\n".join(f"applied {name}" for name in applied) or "up to date")


@db_group.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the job store's database (extra arguments go to psql)."""
    try:
        target = database_url(settings())
        binary = str(Server.tool("psql"))
    except JobStoreError as exc:
        raise fail_cleanly(exc) from None
    sys.stdout.flush()
    os.execv(binary, [binary, target, *psql_args])
