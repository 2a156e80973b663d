"""How scripts log: warnings by default, `-v` info, `-vv` debug; `--log-json` (or
CAPTURE_LOG_JSON=1, for log collectors) one JSON object per line. HTTP client libraries
stay at warnings, so no request line (and no URL with a secret in it) is ever logged."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from pythonjsonlogger.json import JsonFormatter

TEXT = "%(levelname)s %(name)s: %(message)s"
QUIET = ("httpx", "httpcore", "hypercorn.error", "urllib3")
# The connection pool says "discarding broken connection" once per connection after a
# failover; the store's own line says it better. Shown with -v.
POOL = "psycopg.pool"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (click's test runner and
    pytest swap it)."""

    _prcapture = True

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(verbosity: int = 0, as_json: bool | None = None) -> None:
    """Sets up the root logger once for this process (again: replaces the handler)."""
    if as_json is None:
        as_json = os.environ.get("CAPTURE_LOG_JSON", "") in ("1", "true", "yes")
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    handler = _Stderr()
    if as_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_prcapture", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.getLogger(POOL).setLevel(logging.ERROR if verbosity == 0 else level)


def _verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        ctx.meta["prcapture.verbosity"] = value
        configure(value, ctx.meta.get("prcapture.json"))


def _json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["prcapture.json"] = True
        configure(ctx.meta.get("prcapture.verbosity", 0), True)


def log_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`-v/--verbose` (repeatable) and `--log-json` on a script."""
    f = click.option(
        "--log-json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_json,
        help="Log one JSON object per line (also CAPTURE_LOG_JSON=1).",
    )(f)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        is_eager=True,
        callback=_verbose,
        help="Log more: -v info, -vv debug.",
    )(f)
