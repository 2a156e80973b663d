"""Tracked repositories and what the planner knows of their freshness, in PostgreSQL
(tracked_repositories, repo_probes, freshness_tiers): the freshness loop's only SQL."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from capture.freshness.rules import TIERS, Tier, Tracked
from jobstore import ConfigError, Database, parse_repository

LOAD = """
SELECT t.repository, t.tier, t.bootstrap, t.promoted_until, t.workspace, t.added_at,
       p.fresh_as_of, p.probed_at, p.changed_at, p.pending_since IS NOT NULL AS pending,
       w.updated_at AS watermark, p.refresh_job
FROM tracked_repositories t
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository
ORDER BY t.repository
"""


@dataclass(frozen=True)
class Entry:
    """One line of a registry file: `owner/name [tier [workspace]]`."""

    repository: str
    tier: str
    workspace: str | None = None


def parse_entry(line: str, where: str, default_tier: str = "warm") -> Entry | None:
    """A registry file line (blank lines and # comments are skipped); ConfigError names
    the line if it is not `owner/name [hot|warm|cold] [workspace]`."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    if len(words) > 3:
        raise ConfigError(
            f"{where}: expected 'owner/name [tier] [workspace]', got {line.strip()!r}"
        )
    try:
        repository = parse_repository(words[0]).lower()
    except Exception as exc:  # the spec's message names what is wrong with the name
        raise ConfigError(f"{where}: {exc}") from None
    tier = words[1] if len(words) > 1 else default_tier
    if tier not in TIERS:
        raise ConfigError(f"{where}: tier must be one of {', '.join(TIERS)}, got {tier!r}")
    return Entry(repository, tier, words[2] if len(words) > 2 else None)


def read_entries(path: Path) -> list[Entry]:
    """Every entry of a registry file, all checked before any is used."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        entry = parse_entry(line, f"{path}:{number}")
        if entry is not None:
            entries.append(entry)
    return entries


class Registry:
    """The tracked repositories and their freshness state."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _run(self, query: str, params: Any = (), many: bool = False) -> list[dict]:
        if many:

            def work(conn: psycopg.Connection) -> list[dict]:
                with conn.cursor() as cur:
                    cur.executemany(query, params)
                return []

            return self.db.run(work)
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    # Tracking.

    def track(self, entries: Iterable[Entry], now: datetime) -> tuple[int, int]:
        """Adds (or re-tiers) repositories in one transaction; returns (added, changed)."""
        rows = [
            {"repository": e.repository, "tier": e.tier, "workspace": e.workspace, "now": now}
            for e in entries
        ]
        before = {r["repository"]: r for r in self.tracked()}
        self._run(
            "INSERT INTO tracked_repositories (repository, tier, workspace, added_at) "
            "VALUES (%(repository)s, %(tier)s, %(workspace)s, %(now)s) "
            "ON CONFLICT (repository) DO UPDATE SET tier = EXCLUDED.tier, "
            "workspace = COALESCE(EXCLUDED.workspace, tracked_repositories.workspace)",
            rows,
            many=True,
        )
        added = sum(r["repository"] not in before for r in rows)
        changed = sum(
            r["repository"] in before
            and (before[r["repository"]]["tier"], before[r["repository"]]["workspace"])
            != (r["tier"], r["workspace"] or before[r["repository"]]["workspace"])
            for r in rows
        )
        return added, changed

    def untrack(self, repository: str) -> bool:
        """Stops tracking; captured data stays. False if it was not tracked."""
        name = repository.lower()
        gone = self._run(
            "DELETE FROM tracked_repositories WHERE repository = %s RETURNING repository", (name,)
        )
        self._run("DELETE FROM repo_probes WHERE repository = %s", (name,))
        return bool(gone)

    def tracked(self) -> list[dict]:
        return self._run(
            "SELECT repository, tier, workspace, added_at, promoted_until, bootstrap, "
            "bootstrap_jobs FROM tracked_repositories ORDER BY repository"
        )

    def promote(self, repository: str, until: datetime, reason: str) -> bool:
        """Hot until `until` (never shortening an earlier promotion); False if untracked."""
        return bool(
            self._run(
                "UPDATE tracked_repositories SET promoted_until = GREATEST(promoted_until, %s), "
                "promoted_reason = %s WHERE repository = %s RETURNING repository",
                (until, reason[:200], repository.lower()),
            )
        )

    def freshness(self, breached_only: bool = False, repository: str | None = None) -> list[dict]:
        """repo_freshness: age against target per tracked repository (or just
        `repository`), most overdue first."""
        where = ["breached"] if breached_only else []
        params: list[Any] = []
        if repository is not None:
            where.append("repository = %s")
            params.append(repository.lower())
        return self._run(
            "SELECT repository, tier, effective_tier, workspace, bootstrap, target, age, "
            "breached, fresh_as_of, last_success, next_due, probed_at, watermark, "
            "refresh_job, last_error FROM repo_freshness"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY breached DESC, "
            "extract(epoch FROM age) / extract(epoch FROM target) DESC NULLS FIRST, repository",
            params,
        )

    def breached(self) -> list[dict]:
        """The tracked repositories past their target: (repository, effective_tier)."""
        return self._run(
            "SELECT repository, effective_tier FROM repo_freshness WHERE breached "
            "ORDER BY repository"
        )

    # What the planner reads and writes.

    def sync_tiers(self, tiers: Mapping[str, Tier]) -> None:
        """The configured targets into freshness_tiers, so repo_freshness agrees."""
        self._run(
            "INSERT INTO freshness_tiers (tier, target, probe_after, refresh_after) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tier) DO UPDATE SET target = EXCLUDED.target, "
            "probe_after = EXCLUDED.probe_after, refresh_after = EXCLUDED.refresh_after",
            [(t.name, t.target, t.probe_after, t.refresh_after) for t in tiers.values()],
            many=True,
        )

    def load(self, active: Callable[[list[UUID]], Collection[UUID]]) -> list[Tracked]:
        """Every tracked repository as the planner sees it; `active` names which of the
        refresh jobs have not ended (the job store answers it)."""
        rows = self._run(LOAD)
        running = active([r["refresh_job"] for r in rows if r["refresh_job"] is not None])
        return [
            Tracked(
                repository=r["repository"],
                tier=r["tier"],
                bootstrap=r["bootstrap"],
                promoted_until=r["promoted_until"],
                fresh_as_of=r["fresh_as_of"],
                probed_at=r["probed_at"],
                changed_at=r["changed_at"],
                pending=r["pending"],
                watermark=r["watermark"],
                refreshing=r["refresh_job"] in running,
            )
            for r in rows
        ]

    def bootstrapped(self, repository: str, jobs: list[object]) -> None:
        self._run(
            "UPDATE tracked_repositories SET bootstrap = 'started', bootstrap_jobs = %s "
            "WHERE repository = %s",
            (jobs, repository),
        )

    def probed(
        self, results: Iterable[tuple[str, datetime | None, str | None]], now: datetime
    ) -> None:
        """Probe answers: (repository, newest update, error)."""
        self._run(
            "INSERT INTO repo_probes (repository, probed_at, newest_updated_at, last_error) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (repository) DO UPDATE SET "
            "probed_at = EXCLUDED.probed_at, newest_updated_at = EXCLUDED.newest_updated_at, "
            "last_error = EXCLUDED.last_error",
            [(repo, now, newest, error) for repo, newest, error in results],
            many=True,
        )

    def fresh(self, repositories: Iterable[str], as_of: datetime) -> None:
        """Unchanged since what is stored: fresh as of the probe, without a job."""
        self._run(
            "UPDATE repo_probes SET fresh_as_of = GREATEST(fresh_as_of, %s) "
            "WHERE repository = ANY(%s)",
            (as_of, list(repositories)),
        )

    def refreshing(self, changes: Iterable[tuple[str, object]], now: datetime) -> None:
        """The refresh job enqueued for each (for changes found, or a bootstrap)."""
        self._run(
            "INSERT INTO repo_probes (repository, changed_at, refresh_job) VALUES (%s, %s, %s) "
            "ON CONFLICT (repository) DO UPDATE SET changed_at = EXCLUDED.changed_at, "
            "refresh_job = EXCLUDED.refresh_job, pending_since = NULL",
            [(repo, now, job) for repo, job in changes],
            many=True,
        )

    def pending(self, repositories: Iterable[str], now: datetime) -> None:
        """A probe found changes that wait for their refresh (at `refresh_after`)."""
        self._run(
            "UPDATE repo_probes SET pending_since = COALESCE(pending_since, %s) "
            "WHERE repository = ANY(%s)",
            (now, list(repositories)),
        )
