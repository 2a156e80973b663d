"""What every script shares: one-line errors, the store a script opens, JSON and ISO times."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import click
import httpx

from capture import settings as capture
from capture.cli import logs
from capture.errors import CaptureError
from capture.freshness.registry import Registry
from capture.github.ledger import PostgresBudgets, dispatch_observer
from capture.jobtypes import capable
from jobstore import (
    AmbiguousJobId,
    ConfigError,
    DatabaseUnavailable,
    Dispatcher,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    JobStore,
    JobStoreError,
    JobViews,
    Settings,
    catch_up,
    database_url,
    load_prices,
    open_store,
    open_views,
)
from jobstore import load_settings as load

log = logging.getLogger(__name__)

# --version on every script: the installed distribution's version.
version_option = click.version_option(
    package_name="prcapture", message="%(prog)s (prcapture %(version)s)"
)


class OneLineErrors:
    """Click errors in one line: bad input exits 2, failed work exits 1."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # Every database connection names the script, for pg_stat_activity (libpq's
        # PGAPPNAME, for this call only; an operator's own setting wins).
        prog = kwargs.get("prog_name") or sys.argv[0] or self.name or "script"
        script = os.path.basename(prog).removeprefix("prcapture-")
        named = "PGAPPNAME" not in os.environ
        if named:
            os.environ["PGAPPNAME"] = f"prcapture-{script}"
        logs.configure()
        try:
            return self._main(args, standalone_mode, kwargs)
        finally:
            if named:
                os.environ.pop("PGAPPNAME", None)

    def _main(self, args: Any, standalone_mode: bool, kwargs: dict[str, Any]) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class Group(OneLineErrors, click.Group):
    """A click group whose errors are one line."""


class Command(OneLineErrors, click.Command):
    """A click command whose errors are one line."""


class Resources:
    """The store and views a script uses, opened on first use; views caught up on close."""

    def __init__(self, config: Settings | None = None) -> None:
        self._settings = config
        self._store: JobStore | None = None
        self._views: JobViews | None = None
        self._registry: Registry | None = None
        self._budgets: PostgresBudgets | None = None
        self._runner: Any = None  # capture.attempt.Runner
        self._closers: list[Callable[[], object]] = []
        self.url: str | None = None

    def on_close(self, closer: Callable[[], object]) -> None:
        self._closers.append(closer)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load()
        return self._settings

    def configure(self, **changes: Any) -> None:
        """Changes settings before the store is opened (e.g. a server's pool)."""
        assert self._store is None, "configure before the store is opened"
        self._settings = replace(self.settings, **changes)

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self.url = database_url(self.settings)
            where = urlsplit(self.url)
            log.info("job store: database %s on %s", where.path.lstrip("/"), where.hostname)
            self._store = open_store(self.settings, url=self.url)
        return self._store

    @property
    def views(self) -> JobViews:
        if self._views is None:
            self.store  # noqa: B018 - opens the database first (and migrates it)
            assert self.url is not None
            self._views = open_views(self.store)
            self._views.set_prices(load_prices(self.settings.prices_path))
        return self._views

    def budgets(self) -> PostgresBudgets:
        """The shared budget ledger, on the store's connections."""
        if self._budgets is None:
            self._budgets = PostgresBudgets(self.store.database("budgets"))
        return self._budgets

    def dispatcher(self) -> Dispatcher:
        """A dispatcher on the store (recording the dispatch token's budget in the shared
        ledger); its HTTP client closes with the script."""
        client = httpx.Client(timeout=httpx.Timeout(30.0))
        self.on_close(client.close)
        store = self.store
        token = store.settings.lanes.github_token.reveal()
        return Dispatcher.open(store, client, capable, dispatch_observer(self.budgets(), token))

    def registry(self) -> Registry:
        """The tracked repositories (capture.freshness), on the store's connections."""
        if self._registry is None:
            self._registry = Registry(self.store.database("registry"))
        return self._registry

    def runner(self) -> Any:
        """What runs attempts in this process (one GitHub client, the store's connections);
        bad capture settings are bad input (exit 2)."""
        from capture.attempt import Runner  # the GitHub clients: only scripts that run jobs

        if self._runner is None:
            self._runner = Runner(self.store, capture_settings())
            self.on_close(self._runner.close)
        return self._runner

    def catch_up(self) -> int:
        return catch_up(self.store, self.views)

    def close(self) -> None:
        """Brings the views up to date (so they are current when the script returns); on
        a database that cannot take writes now, leaves that to the next script."""
        try:
            for closer in reversed(self._closers):
                closer()
            if self._store is not None:
                with contextlib.suppress(DatabaseUnavailable):
                    self.catch_up()
        finally:
            if self._views is not None:
                self._views.close()
            if self._store is not None:
                self._store.close()


@contextmanager
def errors() -> Iterator[None]:
    """User mistakes exit 2 with one line; failures of the work exit 1 with one line."""
    try:
        yield
    except (InvalidSpec, JobNotFound, AmbiguousJobId, ConfigError, InvalidTransition) as exc:
        raise click.UsageError(str(exc)) from None
    except (JobStoreError, CaptureError) as exc:
        raise click.ClickException(str(exc)) from None


def resources(ctx: click.Context) -> Resources:
    """The script's Resources, opened on first use and closed with the click context."""
    if not isinstance(ctx.obj, Resources):
        ctx.obj = Resources()
        ctx.call_on_close(ctx.obj.close)
    return ctx.obj


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):  # durations as seconds
        return value.total_seconds()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, default=to_json, sort_keys=True))


class IsoTime(click.ParamType):
    """An ISO 8601 time; without a zone it is UTC."""

    name = "iso-time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (like 2026-11-29T12:00:00Z)", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def capture_settings() -> capture.CaptureSettings:
    """The environment's capture settings; bad ones are bad input (exit 2)."""
    try:
        return capture.load()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
