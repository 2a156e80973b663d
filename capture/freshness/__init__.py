"""The freshness loop: tracked repositories kept within their tier's target by batched
change probes and whole refreshes of what changed.

`rules` decides (pure), `probe` asks GitHub, `registry` keeps the state, `loop` runs a
pass of the planner."""

from capture.freshness.rules import DEFAULT_TIERS, FreshnessSettings, Tier, Tracked

__all__ = ["DEFAULT_TIERS", "FreshnessSettings", "Tier", "Tracked"]
