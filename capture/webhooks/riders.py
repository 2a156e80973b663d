"""Files, commits and labels of stored pull requests that webhooks told of (opened,
reopened, synchronize: no payload carries them) riding the planner's probe queries.

GitHub charges at least a point per query, and a probe query of 100 repositories costs
one; a few pull requests' details in it cost nothing more. So each pass that sends a
probe query claims up to RIDERS waiting deliveries (oldest first, none an apply job or
another planner holds), and they go in its query; what comes back is stored and the
deliveries are done. What the query could not give is given back to its repository's
apply job, which fetches it at the end of its window (CAPTURE_WEBHOOK_DETAILS_SECONDS)
as before. A planner that dies holding a claim holds it for CLAIM_STALE at most."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from uuid import UUID, uuid5

from capture.errors import CaptureError
from capture.fetch.collect import collect
from capture.fetch.pages import Page, fetch_pages
from capture.github.client import GitHub
from capture.records import Rows
from capture.storage import Storage
from capture.webhooks.deliveries import Claimed, Deliveries
from jobstore import Database, DatabaseRefused

log = logging.getLogger(__name__)
RIDERS = 16  # pull requests a probe query carries: (100 + 3 x 16) / 100 rounds to 1 point
CLAIM_STALE = timedelta(minutes=10)  # as the apply jobs' claims
PLANNER = uuid5(UUID("6f0d6b4e-8a47-4c55-9a53-0b8f1d0f2b11"), "planner-probe")
# Waiting deliveries whose pull requests are all stored (a node id to ask by): the
# oldest, unclaimed (or claimed by a holder that died), skipping rows others lock.
CLAIM = """
WITH picked AS (
    SELECT d.delivery_id FROM github_deliveries d
    WHERE d.status = 'refresh'
      AND (d.claimed_by IS NULL OR d.claimed_at < %(stale)s)
      AND d.refresh_numbers IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM unnest(d.refresh_numbers) AS n(number)
          WHERE NOT EXISTS (SELECT 1 FROM pull_requests p
                            WHERE p.repository_id = d.repository_id AND p.number = n.number
                              AND p.node_id IS NOT NULL))
    ORDER BY d.received_at
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE github_deliveries d SET claimed_by = %(me)s, claimed_at = %(now)s
FROM picked WHERE d.delivery_id = picked.delivery_id
RETURNING d.delivery_id, d.repository_id, d.event, d.action, d.received_at,
          d.refresh_numbers
"""


class Riding:
    """What rides one probe query: the claimed deliveries and their pull requests as
    (repository id, number, node id)."""

    def __init__(self, db: Database) -> None:
        self.storage = Storage(db)
        self.deliveries = Deliveries(db, self.storage)
        self.claimed: list[Claimed] = []
        self.pulls: list[tuple[int, int, str]] = []

    @property
    def node_ids(self) -> list[str]:
        return [node_id for _, _, node_id in self.pulls]

    def claim(self, now: datetime, most: int = RIDERS) -> bool:
        """Up to `most` waiting deliveries' pull requests claimed for the planner; whether
        any will ride."""
        params = {"me": PLANNER, "now": now, "stale": now - CLAIM_STALE, "limit": most}
        rows = self.deliveries.db.run(lambda conn: conn.execute(CLAIM, params).fetchall())
        self.claimed = [Claimed(**row) for row in rows]
        wanted = {(d.repository_id, n) for d in self.claimed for n in d.refresh_numbers or ()}
        ids = self.deliveries.stored_pulls(wanted)
        self.pulls = sorted((r, n, ids[(r, n)]) for r, n in wanted if (r, n) in ids)
        if self.claimed and not self.pulls:
            self.give_back()
        return bool(self.pulls)

    def give_back(self) -> None:
        """The claims released (the probe query failed): their apply jobs take them."""
        self.deliveries.release(self.claimed, PLANNER)
        self.claimed = []

    def store(self, gh: GitHub, nodes: list[dict | None], now: datetime, errors: list) -> int:
        """The pull requests the probe query brought stored (their longer connections
        followed), their deliveries done; the rest given back. Returns how many were
        stored; a failure is reported in `errors` and everything given back."""
        try:
            return self._store(gh, nodes, now)
        except (CaptureError, DatabaseRefused) as exc:
            errors.append(f"pull requests riding the probe not stored: {exc}")
            with contextlib.suppress(DatabaseRefused):  # else the claims lapse (CLAIM_STALE)
                self.give_back()
            return 0

    def _store(self, gh: GitHub, nodes: list[dict | None], now: datetime) -> int:
        rows, failed = Rows(), []
        pending: list[Page] = []
        missing: set[tuple[int, int]] = set()
        for (repo_id, number, _), node in zip(self.pulls, nodes, strict=True):
            if node is None:  # not shown (no access, or gone): its own job's
                missing.add((repo_id, number))
                continue
            collect(rows, node, repo_id, pending, failed)
        fetch_pages(gh, rows, pending, failed)
        numbers = {number for number, _ in failed}  # by number: at worst a few more go back
        missing |= {(r, n) for r, n, _ in self.pulls if n in numbers}
        self.storage.write(rows)
        have = {(r, n) for r, n, _ in self.pulls} - missing
        done = [
            d
            for d in self.claimed
            if all((d.repository_id, n) in have for n in d.refresh_numbers or ())
        ]
        self.deliveries.refreshed(done, PLANNER, now)
        self.deliveries.release([d for d in self.claimed if d not in done], PLANNER)
        if missing:
            log.info("%d pull requests did not ride the probe: left to apply jobs", len(missing))
        return len(self.pulls) - len(missing)
