"""`bin/jobs rollout`: the hybrid rollout's percentage, allow and deny lists and an
emergency stop per lane, recorded as events with their reasons (and shown as history)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from capture.cli import render
from capture.cli.common import echo_json, errors, resources
from jobstore import LANES, Rollout

reason_option = click.option(
    "--reason", default=None, help="Why (kept in the history; default: who did it)."
)


@click.group("rollout")
def rollout() -> None:
    """Show or change the rollout controls (events: every change is kept with its reason)."""


def _why(reason: str | None) -> str:
    if reason is not None and not reason.strip():
        raise click.BadParameter(
            "must say something (or leave --reason out)", param_hint="'--reason'"
        )
    return (reason or f"by {getpass.getuser()}").strip()[:500]


def _state(r: Rollout, env_percent: float) -> dict[str, Any]:
    return {
        "percent": env_percent if r.percent is None else r.percent,
        "percent_from": "environment (JOBSTORE_ROLLOUT_PERCENT)" if r.percent is None else "events",
        "allow": sorted(r.allow),
        "deny": sorted(r.deny),
        "stopped": dict(sorted(r.stopped.items())),
    }


def _change(change: Callable[[Rollout, datetime], None], as_json: bool) -> None:
    s = resources(click.get_current_context())
    with errors():
        now = datetime.now(UTC)
        done = s.store.change_rollout(lambda r: change(r, now))
        _show(done, s.settings.routing.rollout_percent, as_json)


def _show(r: Rollout, env_percent: float, as_json: bool) -> None:
    state = _state(r, env_percent)
    if as_json:
        echo_json(state)
        return
    click.echo(f"hybrid rollout: {state['percent']:g}% (from {state['percent_from']})")
    click.echo(f"allow: {', '.join(state['allow']) or '-'}")
    click.echo(f"deny: {', '.join(state['deny']) or '-'}")
    for lane in LANES:
        why = state["stopped"].get(lane)
        click.echo(f"{lane}: {'STOPPED (' + why + ')' if why else 'running'}")


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@rollout.command("show")
@json_option
def show(as_json: bool) -> None:
    """The controls now."""
    s = resources(click.get_current_context())
    with errors():
        _show(s.store.rollout(), s.settings.routing.rollout_percent, as_json)


class Percent(click.ParamType):
    name = "0..100|env"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in ("env", None):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number from 0 to 100 nor 'env'", param, ctx)
        if not 0 <= number <= 100:
            self.fail(f"{number:g} is not from 0 to 100", param, ctx)
        return number


@rollout.command("percent")
@click.argument("percent", type=Percent())
@reason_option
@json_option
def percent(percent: float | None, reason: str | None, as_json: bool) -> None:
    """Send PERCENT of repositories (a stable hash) through the hybrid routing table;
    `env` hands the decision back to JOBSTORE_ROLLOUT_PERCENT."""
    why = _why(reason)
    _change(lambda r, now: r.set_percent(percent, why, now), as_json)


def _listing(name: str, listing: str, doc: str) -> click.Command:
    @click.argument("repositories", nargs=-1, required=True)
    @reason_option
    @json_option
    def command(repositories: tuple[str, ...], reason: str | None, as_json: bool) -> None:
        why = _why(reason)

        def change(r: Rollout, now: datetime) -> None:
            for repository in repositories:
                r.set_listing(repository, listing, why, now)

        _change(change, as_json)

    command.__doc__ = doc
    return click.command(name)(command)


rollout.add_command(
    _listing("allow", "allow", "Always route REPOSITORIES (owner/name) by the hybrid table.")
)
rollout.add_command(_listing("deny", "deny", "Never: REPOSITORIES always go to the default lane."))
rollout.add_command(_listing("clear", "none", "Take REPOSITORIES off both lists."))


@rollout.command("stop")
@click.argument("lane", type=click.Choice(LANES))
@reason_option
@json_option
def stop(lane: str, reason: str | None, as_json: bool) -> None:
    """Emergency stop: nothing is dispatched to LANE (its work falls back) until resumed."""
    why = _why(reason)
    _change(lambda r, now: r.stop(lane, why, now), as_json)


@rollout.command("resume")
@click.argument("lane", type=click.Choice(LANES))
@reason_option
@json_option
def resume(lane: str, reason: str | None, as_json: bool) -> None:
    """Lift LANE's stop (by hand or automatic)."""
    why = _why(reason)

    def change(r: Rollout, now: datetime) -> None:
        if lane not in r.stopped:
            raise click.BadParameter(f"{lane} is not stopped", param_hint="'LANE'")
        r.resume(lane, why, now)

    _change(change, as_json)


@rollout.command("history")
@json_option
def history(as_json: bool) -> None:
    """Every change, oldest first, with its reason."""
    s = resources(click.get_current_context())
    with errors():
        rows = []
        for event in s.store.rollout_history():
            kind = type(event).__name__
            if kind == "Begun":
                continue
            detail = {
                k: v
                for k, v in event.__dict__.items()
                if k not in ("originator_id", "originator_version", "timestamp")
            }
            rows.append({"at": event.timestamp, "change": kind, **detail})
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No rollout changes yet: the environment decides.")
        return
    for row in rows:
        row["what"] = " ".join(
            f"{k}={v}" for k, v in row.items() if k not in ("at", "change", "reason")
        )
    click.echo(render.table(rows, ["at", "change", "what", "reason"]))
