"""The freshness loop's settings from the environment: tier targets, promotion,
bootstrap and the lanes it uses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta

from capture.freshness.rules import DEFAULT_TIERS, FreshnessSettings, Tier
from capture.settings import choice, whole_number
from jobstore import ConfigError


def duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """`90s`, `15m`, `6h`, `2d` or plain seconds."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(raw[-1])
    number = raw[:-1] if unit else raw
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be a duration like 15m, 6h or 900, got {raw!r}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be more than zero, got {raw!r}")
    return timedelta(seconds=seconds)


def load_freshness(env: Mapping[str, str] | None = None) -> FreshnessSettings:
    """The freshness loop's settings: tier targets (probed at a third of the target, a
    change refreshed at two thirds), promotion, bootstrap and the lanes it uses."""
    env = os.environ if env is None else env
    tiers = {}
    for name, tier in DEFAULT_TIERS.items():
        target = duration(env, f"CAPTURE_TIER_{name.upper()}", tier.target)
        tiers[name] = Tier.of(name, target)
    lanes = ("inngest", "github_actions", "local")
    refresh_lane = choice(env, "CAPTURE_REFRESH_LANE", "auto", ("auto", *lanes))
    return FreshnessSettings(
        tiers=tiers,
        promote_for=duration(env, "CAPTURE_PROMOTE_FOR", timedelta(hours=2)),
        bootstrap_days=min(whole_number(env, "CAPTURE_BOOTSTRAP_DAYS", 30), 365),
        bootstrap_per_pass=whole_number(env, "CAPTURE_BOOTSTRAP_PER_PASS", 50),
        bootstrap_running=whole_number(env, "CAPTURE_BOOTSTRAP_RUNNING", 200),
        bootstrap_tries=max(1, whole_number(env, "CAPTURE_BOOTSTRAP_TRIES", 3)),
        fast_lane=choice(env, "CAPTURE_FAST_LANE", "inngest", lanes),
        bulk_lane=choice(env, "CAPTURE_BULK_LANE", "github_actions", lanes),
        refresh_lane=None if refresh_lane == "auto" else refresh_lane,
        reserve=whole_number(env, "CAPTURE_RESERVE_POINTS", 500),
        contributors_every=duration(env, "CAPTURE_CONTRIBUTORS_EVERY", timedelta(days=7)),
        contributor_queries=whole_number(env, "CAPTURE_CONTRIBUTOR_QUERIES", 2),
        comment_probes=choice(env, "CAPTURE_COMMENT_PROBES", "auto", ("auto", "yes", "no")),
        reconcile=choice(env, "CAPTURE_RECONCILE", "auto", ("auto", "always", "never")),
        reconcile_days=min(whole_number(env, "CAPTURE_RECONCILE_DAYS", 2), 90),
    )
