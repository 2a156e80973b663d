"""What each lane costs: the price table (packaged defaults or a TOML file)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jobstore.errors import ConfigError
from jobstore.routing import LANES


@dataclass(frozen=True)
class LanePrice:
    per_run: float = 0.0
    per_step: float = 0.0
    per_minute: float = 0.0
    free_minutes: float = 0.0


def load_prices(path: Path | None = None) -> dict[str, LanePrice]:
    """The price table: the packaged defaults, or the TOML file at `path`."""
    try:
        text = (
            path.read_text()
            if path
            else resources.files("jobstore").joinpath("prices.toml").read_text()
        )
    except OSError as exc:
        raise ConfigError(f"JOBSTORE_PRICES: cannot read {path}: {exc.strerror}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"price table {path}: {exc}") from None
    prices = {}
    for lane in LANES:
        entry = table.get(lane, {})
        unknown = set(entry) - set(LanePrice.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"price table: unknown key {sorted(unknown)[0]!r} for {lane}")
        try:
            prices[lane] = LanePrice(**{k: float(v) for k, v in entry.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"price table: prices for {lane} must be numbers") from None
    return prices
