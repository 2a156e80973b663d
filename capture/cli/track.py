"""`bin/track`: the tracked repositories the freshness planner keeps fresh, and their
tiers (hot 15 min, warm 6 h, cold 24 h by default)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from capture.cli import render
from capture.cli.common import Group, echo_json, errors, resources, version_option
from capture.cli.logs import log_options
from capture.freshness.registry import Entry, parse_entry, read_entries
from capture.freshness.rules import TIERS


@click.group(cls=Group)
@version_option
@log_options
def track() -> None:
    """Add, remove, list or import the repositories kept fresh."""


@track.command()
@click.argument("repositories", nargs=-1, required=True)
@click.option("--tier", type=click.Choice(TIERS), default="warm", show_default=True)
@click.option("--workspace", help="A label to group repositories by (e.g. a customer).")
@click.pass_context
def add(
    ctx: click.Context, repositories: tuple[str, ...], tier: str, workspace: str | None
) -> None:
    """Track REPOSITORIES (owner/name): bootstrapped, then kept within TIER's target.
    Tracking one again changes its tier."""
    with errors():
        entries = [
            parse_entry(f"{r} {tier} {workspace or ''}", f"repository {r!r}") for r in repositories
        ]
        added, changed = (
            resources(ctx).registry().track([e for e in entries if e], datetime.now(UTC))
        )
    click.echo(f"tracking {added} new, {changed} changed ({tier})")


@track.command()
@click.argument("repository")
@click.pass_context
def remove(ctx: click.Context, repository: str) -> None:
    """Stop keeping REPOSITORY fresh (its captured data stays)."""
    with errors():
        entry = parse_entry(repository, f"repository {repository!r}")
        assert entry is not None
        if not resources(ctx).registry().untrack(entry.repository):
            raise click.UsageError(f"{entry.repository} is not tracked")
    click.echo(f"no longer tracking {entry.repository}")


@track.command("bootstrap")
@click.option(
    "--again",
    "again",
    multiple=True,
    metavar="REPOSITORY",
    help="Start this repository's bootstrap anew (e.g. one that failed); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def bootstrap_command(ctx: click.Context, again: tuple[str, ...], as_json: bool) -> None:
    """How far the fleet's bootstrap is (waiting, in progress, done, failed), the failed
    ones and why; --again starts those named anew at the planner's next pass."""
    with errors():
        names = []
        for name in again:
            entry = parse_entry(name, f"repository {name!r}")
            assert entry is not None
            names.append(entry.repository)
        registry = resources(ctx).registry()
        if names and not registry.bootstrap_again(names):
            raise click.UsageError(
                f"not all of {', '.join(names)} are tracked: nothing was changed"
            )
        progress = registry.bootstrap_progress()
        failed = registry.bootstraps_failed()
    if as_json:
        echo_json(progress | {"failed_repositories": failed, "again": names})
        return
    if names:
        click.echo(f"bootstrapping anew: {', '.join(names)}")
    click.echo(render.bootstrap_line(progress))
    if failed:
        click.echo(render.table(failed, ["repository", "bootstrap_tries", "bootstrap_error"]))


@track.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def list_tracked(ctx: click.Context, as_json: bool) -> None:
    """The tracked repositories, their tiers and bootstrap state."""
    with errors():
        rows = resources(ctx).registry().tracked()
    if as_json:
        echo_json(rows)
        return
    columns = ["repository", "tier", "workspace", "bootstrap", "promoted_until", "added_at"]
    columns += ["gone_at"]  # GitHub no longer shows it (deleted, private, uninstalled)
    click.echo(render.table(rows, columns) if rows else "no repositories tracked")


@track.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def events(ctx: click.Context, limit: int, as_json: bool) -> None:
    """What GitHub did to tracked repositories, newest first: renamed and transferred
    (old and new name), gone (why) and back."""
    with errors():
        rows = resources(ctx).registry().repository_events(limit)
    if as_json:
        echo_json(rows)
        return
    columns = ["at", "kind", "old_name", "new_name", "repo_id", "reason"]
    click.echo(render.table(rows, columns) if rows else "no repository was moved or gone")


@track.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def import_file(ctx: click.Context, file: Path) -> None:
    """Track every repository in FILE, one `owner/name [tier] [workspace]` per line (tier
    warm by default; # comments). Every line is checked before anything is written."""
    with errors():
        entries: list[Entry] = read_entries(file)
        added, changed = resources(ctx).registry().track(entries, datetime.now(UTC))
    click.echo(f"{len(entries)} repositories in {file}: {added} new, {changed} changed")
