"""Operating the service: the health snapshot, its Prometheus metrics, the alert rules
(here and, as a Prometheus rules file, `alerts.rules.yml`) with their notifier, and the
automatic rollback the sweeper applies."""

from capture.ops.alerts import RULES
from capture.ops.health import Health, snapshot
from capture.ops.metrics import render
from capture.ops.oversee import Oversight, oversee

__all__ = ["RULES", "Health", "Oversight", "oversee", "render", "snapshot"]
