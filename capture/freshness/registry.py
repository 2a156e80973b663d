"""Tracked repositories and what the planner knows of their freshness, in PostgreSQL
(tracked_repositories, repo_probes, freshness_tiers): the freshness loop's only SQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from capture.freshness.rules import (
    GONE_RECHECK,
    TIERS,
    WEBHOOK_RECONCILE,
    WEBHOOKS_HEALTHY,
    Tier,
    Tracked,
)
from jobstore import ConfigError, Database, parse_repository

COLUMNS = """
SELECT t.repository, t.tier, t.bootstrap, t.promoted_until, t.workspace, t.added_at,
       t.next_due, p.fresh_as_of, p.probed_at, p.changed_at,
       p.pending_since IS NOT NULL AS pending, w.updated_at AS watermark, p.refresh_job,
       t.node_id, t.gone_at, w.comments_at AS comments_watermark, p.comments_probed_at,
       p.pull_requests,
       CASE WHEN i.suspended_at IS NULL AND i.deleted_at IS NULL THEN i.checked_at END
         AS webhooks_checked_at
FROM tracked_repositories t
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository
LEFT JOIN webhook_installations i ON i.installation_id = t.installation_id
"""
# The due ones, most overdue first (at most `limit`), and the `spare` nearest to being
# due (a probe query takes up to 100 repositories for the price of one): by the index on
# next_due, so a pass costs what is due, not what is tracked.
LOAD = f"""
(SELECT * FROM ({COLUMNS} WHERE t.next_due <= %(now)s ORDER BY t.next_due LIMIT %(limit)s) d)
UNION ALL
(SELECT * FROM ({COLUMNS} WHERE t.next_due > %(now)s ORDER BY t.next_due LIMIT %(spare)s) s)
"""
LOAD_ALL = COLUMNS + " ORDER BY t.repository"
AFTER = "freshness_after(t.tier, t.promoted_until, %(at)s, '{kind}')"


# The next repositories due a reconciliation, taken (marked) in the same statement.
# One whose webhooks are healthy (deletions come by webhook; the App's delivery log
# brings back failed ones) is next due after WEBHOOK_RECONCILE, a safety net only.
RECONCILE_DUE = (
    "UPDATE tracked_repositories t SET reconcile_at = %(now)s + CASE WHEN EXISTS ("
    "SELECT 1 FROM webhook_installations i WHERE i.installation_id = t.installation_id "
    "AND i.suspended_at IS NULL AND i.deleted_at IS NULL AND i.checked_at >= %(healthy)s) "
    "THEN %(hooked)s ELSE freshness_after(t.tier, t.promoted_until, %(now)s, 'refresh') END "
    "WHERE repository IN ("
    "SELECT repository FROM tracked_repositories WHERE gone_at IS NULL "
    "AND bootstrap <> 'pending' AND reconcile_at <= %(now)s AND (%(always)s OR EXISTS "
    "(SELECT 1 FROM github_behaviour WHERE name = 'edits-move-nothing')) "
    "ORDER BY reconcile_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING repository, EXISTS (SELECT 1 FROM refresh_watermarks w "
    "WHERE w.repository = t.repository AND w.updated_at >= %(active)s) AS active"
)
# Of the newest pull requests a probe showed, those stored (or told by a webhook) at
# least that new: by the unique index on repository and number.
DELIVERED = (
    "SELECT x.r FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::timestamptz[]) "
    "AS x(r, i, n, u) WHERE EXISTS (SELECT 1 FROM pull_requests p WHERE p.repository_id = x.i "
    "AND p.number = x.n AND GREATEST(p.updated_at, p.seen_updated_at) >= x.u) "
    # received after the change (a minute's slack for the two clocks), not yet applied
    "OR EXISTS (SELECT 1 FROM github_deliveries d WHERE d.repository_id = x.i "
    "AND d.status IN ('received', 'refresh') AND d.received_at >= x.u - interval '1 minute')"
)
# Known contributors whose login was not read for a while, never read first.
CONTRIBUTORS_DUE = (
    "SELECT id, node_id, login FROM contributors WHERE node_id IS NOT NULL "
    "AND (checked_at IS NULL OR checked_at < %s) "
    "ORDER BY checked_at NULLS FIRST LIMIT %s"
)
SEEN_TTL = 60.0  # seconds a behaviour not yet seen is not asked about again
PLANNER_LOCK = 0x706C616E  # one planner pass at a time, across every process
FRESHNESS_COLUMNS = (
    "repository",
    "tier",
    "effective_tier",
    "workspace",
    "bootstrap",
    "target",
    "age",
    "breached",
    "fresh_as_of",
    "last_success",
    "next_due",
    "probed_at",
    "watermark",
    "refresh_job",
    "last_error",
    "gone_at",
    "gone_reason",
)
# Stored under a repository's name, moved with it when it is renamed or transferred.
BY_NAME = ("repo_probes", "refresh_watermarks", "sync_watermarks")


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
        self._seen: set[str] = set()
        self._unseen: dict[str, float] = {}  # behaviour -> when it was asked (monotonic)

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
            "INSERT INTO tracked_repositories (repository, tier, workspace, added_at, next_due, "
            "reconcile_at) VALUES (%(repository)s, %(tier)s, %(workspace)s, %(now)s, %(now)s, "
            "%(now)s + freshness_after(%(tier)s, NULL, %(now)s, 'refresh')) "
            "ON CONFLICT (repository) DO UPDATE SET tier = EXCLUDED.tier, "
            "workspace = COALESCE(EXCLUDED.workspace, tracked_repositories.workspace), "
            "next_due = LEAST(tracked_repositories.next_due, EXCLUDED.next_due)",
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

    def cover(
        self,
        installation_id: int,
        repos: Iterable[tuple[str, int | None, str | None]],
        tier: str,
        now: datetime,
    ) -> int:
        """Repositories an installation of the App covers (owner/name, GitHub's ids): tracked
        (at `tier` if new; a tracked one keeps its tier) and known as covered; returns how
        many were new."""
        rows = [(name.lower(), repo_id, node_id) for name, repo_id, node_id in repos]
        if not rows:
            return 0
        names, ids, nodes = (list(column) for column in zip(*rows, strict=True))
        found = self._run(
            "INSERT INTO tracked_repositories (repository, tier, added_at, next_due, "
            "reconcile_at, repo_id, node_id, installation_id) SELECT r, %(tier)s, %(now)s, "
            "%(now)s, %(now)s + freshness_after(%(tier)s, NULL, %(now)s, 'refresh'), i, n, "
            "%(inst)s FROM unnest(%(names)s::text[], %(ids)s::bigint[], %(nodes)s::text[]) "
            "AS x(r, i, n) ON CONFLICT (repository) DO UPDATE SET installation_id = "
            "EXCLUDED.installation_id, repo_id = COALESCE(tracked_repositories.repo_id, "
            "EXCLUDED.repo_id), node_id = COALESCE(tracked_repositories.node_id, "
            "EXCLUDED.node_id) RETURNING (xmax = 0) AS added",
            {
                "tier": tier,
                "now": now,
                "inst": installation_id,
                "names": names,
                "ids": ids,
                "nodes": nodes,
            },
        )
        return sum(bool(r["added"]) for r in found)

    def uncover(self, installation_id: int, names: Collection[str] | None = None) -> list[str]:
        """An installation removed `names` (None: all it covered; the App uninstalled): they
        are no longer tracked (their captured data stays); returns them."""
        wanted = None if names is None else [n.lower() for n in names]
        rows = self._run(
            "SELECT repository FROM tracked_repositories WHERE installation_id = %(i)s "
            "AND (%(names)s::text[] IS NULL OR repository = ANY(%(names)s::text[])) "
            "ORDER BY repository",
            {"i": installation_id, "names": wanted},
        )
        gone = [r["repository"] for r in rows]
        for name in gone:
            self.untrack(name)
        return gone

    def tracked(self) -> list[dict]:
        return self._run(
            "SELECT repository, tier, workspace, added_at, promoted_until, bootstrap, "
            "bootstrap_jobs, repo_id, gone_at, gone_reason FROM tracked_repositories "
            "ORDER BY repository"
        )

    # What GitHub moved or took away.

    def identified(self, ids: Iterable[tuple[str, int, str]]) -> None:
        """GitHub's ids of tracked repositories (name, database id, node id), as a probe
        learned them: from then on they are probed by node id."""
        rows = list(ids)
        if rows:
            self._run(
                "UPDATE tracked_repositories t SET repo_id = x.i, node_id = x.n FROM "
                "unnest(%s::text[], %s::bigint[], %s::text[]) AS x(r, i, n) "
                "WHERE t.repository = x.r AND t.node_id IS DISTINCT FROM x.n",
                tuple(map(list, zip(*rows, strict=True))),
            )

    def moved(self, old: str, new: str, repo_id: int, node_id: str, at: datetime) -> str:
        """A tracked repository renamed or transferred (`new` as GitHub spells it): its
        entry, probe state, watermarks and stored repository row move to the new name in
        one transaction, with a repository_events row; returns the kind of move. Tracked
        under both names (someone tracked the new one too): the two become one."""
        old, name = old.lower(), new.lower()
        kind = "transferred" if old.split("/")[0] != name.split("/")[0] else "renamed"

        def work(conn: psycopg.Connection) -> None:
            both = conn.execute(
                "SELECT 1 FROM tracked_repositories WHERE repository = %s", (name,)
            ).fetchone()
            if both:
                conn.execute("DELETE FROM tracked_repositories WHERE repository = %s", (old,))
                conn.execute(
                    "UPDATE tracked_repositories SET repo_id = %s, node_id = %s "
                    "WHERE repository = %s",
                    (repo_id, node_id, name),
                )
            else:
                conn.execute(
                    "UPDATE tracked_repositories SET repository = %s, repo_id = %s, "
                    "node_id = %s WHERE repository = %s",
                    (name, repo_id, node_id, old),
                )
            for table in BY_NAME:
                keep = "repo_probes" if both else None
                if table != keep:  # the older name's row wins: it is the tracked one's
                    conn.execute(f"DELETE FROM {table} WHERE repository = %s", (name,))
                    conn.execute(
                        f"UPDATE {table} SET repository = %s WHERE repository = %s", (name, old)
                    )
                else:
                    conn.execute(f"DELETE FROM {table} WHERE repository = %s", (old,))
            conn.execute(
                "UPDATE repositories SET name_stale_at = %s WHERE lower(full_name) = %s "
                "AND id <> %s AND name_stale_at IS NULL",
                (at, name, repo_id),
            )
            conn.execute(
                "UPDATE repositories SET full_name = %s, name_stale_at = NULL WHERE id = %s",
                (new, repo_id),
            )
            conn.execute(
                "INSERT INTO repository_events (at, kind, repo_id, old_name, new_name) "
                "VALUES (%s, %s, %s, %s, %s)",
                (at, kind, repo_id, old, name),
            )

        self.db.run(work)
        return kind

    def gone(self, names: Iterable[str], reason: str, at: datetime) -> list[str]:
        """Repositories GitHub does not show: marked gone (not probed or refreshed, not
        breached; looked at again after GONE_RECHECK); returns the newly gone ones, each
        with a repository_events row."""
        names = list(names)
        if not names:
            return []
        rows = self._run(
            "WITH m AS (UPDATE tracked_repositories t SET "
            "gone_at = COALESCE(t.gone_at, %(at)s), "
            "gone_reason = COALESCE(t.gone_reason, %(reason)s), next_due = %(again)s "
            "FROM (SELECT repository, gone_at IS NULL AS fresh FROM tracked_repositories "
            "WHERE repository = ANY(%(names)s)) o WHERE t.repository = o.repository "
            "RETURNING t.repository, t.repo_id, o.fresh), "
            "e AS (INSERT INTO repository_events (at, kind, repo_id, old_name, reason) "
            "SELECT %(at)s, 'gone', repo_id, repository, %(reason)s FROM m WHERE fresh) "
            "SELECT repository FROM m WHERE fresh ORDER BY repository",
            {"at": at, "reason": reason[:200], "names": names, "again": at + GONE_RECHECK},
        )
        return [r["repository"] for r in rows]

    def back(self, names: Iterable[str], at: datetime) -> list[str]:
        """Gone repositories GitHub shows again: live again, with a repository_events row."""
        names = list(names)
        if not names:
            return []
        rows = self._run(
            "WITH m AS (UPDATE tracked_repositories SET gone_at = NULL, gone_reason = NULL "
            "WHERE repository = ANY(%(names)s) AND gone_at IS NOT NULL "
            "RETURNING repository, repo_id), "
            "e AS (INSERT INTO repository_events (at, kind, repo_id, old_name) "
            "SELECT %(at)s, 'back', repo_id, repository FROM m) "
            "SELECT repository FROM m ORDER BY repository",
            {"at": at, "names": names},
        )
        return [r["repository"] for r in rows]

    def comments_probed(self, names: list[str], now: datetime) -> None:
        if names:
            self._run(
                "UPDATE repo_probes SET comments_probed_at = %s WHERE repository = ANY(%s)",
                (now, names),
            )

    def seen(self, behaviour: str) -> bool:
        """Whether GitHub was seen to behave so (github_behaviour): once seen, for good;
        not seen, asked again after a minute."""
        if behaviour in self._seen:
            return True
        asked = self._unseen.get(behaviour)
        if asked is not None and time.monotonic() - asked < SEEN_TTL:
            return False
        found = self._run("SELECT 1 AS x FROM github_behaviour WHERE name = %s", (behaviour,))
        if found:
            self._seen.add(behaviour)
            return True
        self._unseen[behaviour] = time.monotonic()
        return False

    # Reconciliation: recently active pull requests captured whole, now and then.

    def reconcile_due(
        self, now: datetime, active_since: datetime, limit: int, always: bool = False
    ) -> list[str]:
        """Up to `limit` bootstrapped, live repositories due a reconciliation (by the
        index on reconcile_at), most overdue first; each next due after its tier's refresh
        interval (a day where webhooks are healthy), set in the same statement so a
        planner alongside does not take them.
        Returns those with a pull request updated since `active_since` (the others have
        nothing recent to reconcile). Unless `always`, only once GitHub was seen not to
        move a pull request for a comment's edit (where it does, a deletion moves it too,
        and the refresh it brings marks what is gone)."""
        params = {
            "now": now,
            "limit": limit,
            "active": active_since,
            "always": always,
            "healthy": now - WEBHOOKS_HEALTHY,
            "hooked": WEBHOOK_RECONCILE,
        }
        rows = self._run(RECONCILE_DUE, params)
        return sorted(r["repository"] for r in rows if r["active"])

    # Contributors, by GitHub's node id: logins renamed without new activity.

    def contributors_due(self, before: datetime, limit: int) -> list[dict]:
        """Up to `limit` contributors not checked since `before`, never checked first (by
        the index on checked_at)."""
        return self._run(CONTRIBUTORS_DUE, (before, limit))

    def contributors_checked(
        self, checked: list[int], logins: Mapping[int, str], now: datetime
    ) -> int:
        """Marks `checked` as read at `now`, and stores the `logins` GitHub showed (by id);
        returns how many logins changed."""
        if not checked:
            return 0
        pairs = sorted(logins.items())
        rows = self._run(
            "WITH c AS (UPDATE contributors SET checked_at = %(now)s WHERE id = ANY(%(ids)s)), "
            "r AS (UPDATE contributors t SET login = x.login, updated_at = now() "
            "FROM unnest(%(lid)s::bigint[], %(login)s::text[]) AS x(id, login) "
            "WHERE t.id = x.id AND t.login IS DISTINCT FROM x.login RETURNING 1) "
            "SELECT count(*) AS n FROM r",
            {
                "now": now,
                "ids": sorted(checked),
                "lid": [i for i, _ in pairs],
                "login": [login for _, login in pairs],
            },
        )
        return int(rows[0]["n"])

    def repository_events(self, limit: int = 100) -> list[dict]:
        return self._run(
            "SELECT at, kind, repo_id, old_name, new_name, reason FROM repository_events "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        )

    def gone_list(self) -> list[dict]:
        return self._run(
            "SELECT repository, gone_at, gone_reason FROM tracked_repositories "
            "WHERE gone_at IS NOT NULL ORDER BY repository"
        )

    def promote(self, repository: str, until: datetime, reason: str) -> bool:
        """Hot until `until` (never shortening an earlier promotion); False if untracked."""
        return bool(
            self._run(
                "UPDATE tracked_repositories SET promoted_until = GREATEST(promoted_until, %s), "
                "promoted_reason = %s, next_due = LEAST(next_due, now()) "
                "WHERE repository = %s RETURNING repository",
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
            f"SELECT {', '.join(FRESHNESS_COLUMNS)} FROM repo_freshness"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY breached DESC, "
            "extract(epoch FROM age) / extract(epoch FROM target) DESC NULLS FIRST, repository",
            params,
        )

    def freshness_json(self, breached_only: bool = False) -> str:
        """`freshness()` as one JSON array, made by PostgreSQL (times ISO 8601, durations
        in seconds, keys in order): 50,000 repositories in a fraction of a second."""
        fields = ", ".join(
            f"extract(epoch FROM {c}) AS {c}" if c in ("age", "target") else c
            for c in sorted(FRESHNESS_COLUMNS)
        )

        def work(conn: psycopg.Connection) -> str:
            conn.execute("SET LOCAL work_mem = '64MB'")  # the sort stays in memory
            row = conn.execute(  # as text: psycopg would parse json into Python objects
                "SELECT coalesce(json_agg(f ORDER BY f.breached DESC, f.age / f.target DESC "
                f"NULLS FIRST, f.repository), '[]')::text AS doc FROM (SELECT {fields} "
                "FROM repo_freshness" + (" WHERE breached" if breached_only else "") + ") f"
            ).fetchone()
            return row["doc"]

        found = self.db.run(work)
        return found if isinstance(found, str) else json.dumps(found)

    def fleet(self) -> dict[str, Any]:
        """The tracked repositories counted: per tier, bootstrapping (not yet started)."""
        rows = self._run(
            "SELECT tier, count(*) AS n, count(*) FILTER (WHERE bootstrap = 'pending') AS b "
            "FROM tracked_repositories GROUP BY tier"
        )
        tiers = {tier: 0 for tier in TIERS} | {r["tier"]: r["n"] for r in rows}
        return {
            "tiers": tiers,
            "tracked": sum(tiers.values()),
            "bootstrapping": sum(r["b"] for r in rows),
        }

    def bootstrap_progress(self) -> dict[str, int]:
        """How far the fleet's bootstrap is: repositories waiting (pending), in progress
        (started), done and failed (read from an index of the ones not done)."""
        rows = self._run(
            "SELECT bootstrap, count(*) AS n FROM tracked_repositories "
            "WHERE bootstrap <> 'done' GROUP BY bootstrap"
        )
        total = self._run("SELECT count(*) AS n FROM tracked_repositories")[0]["n"]
        counts = {"pending": 0, "started": 0, "failed": 0} | {r["bootstrap"]: r["n"] for r in rows}
        return {
            "waiting": counts["pending"],
            "in_progress": counts["started"],
            "failed": counts["failed"],
            "done": total - sum(counts.values()),
            "tracked": total,
        }

    def bootstrapping(self, limit: int) -> list[dict]:
        """Up to `limit` started bootstraps, the longest unchecked first: their jobs and
        how often the history was tried."""
        return self._run(
            "SELECT repository, bootstrap_jobs, bootstrap_tries, workspace FROM "
            "tracked_repositories WHERE bootstrap = 'started' "
            "ORDER BY bootstrap_checked_at NULLS FIRST LIMIT %s",
            (limit,),
        )

    def bootstrap_checked(
        self,
        now: datetime,
        looked: Iterable[str],
        done: Iterable[str] = (),
        failed: Mapping[str, str] | None = None,
        again: Mapping[str, object] | None = None,
    ) -> None:
        """What a look at started bootstraps found: still running (`looked`), `done`,
        `failed` for good (repository: why) or tried `again` (repository: new history job)."""
        failed, again = failed or {}, again or {}
        self._run(
            "UPDATE tracked_repositories SET bootstrap_checked_at = %(now)s, "
            "bootstrap = CASE WHEN repository = ANY(%(done)s) THEN 'done' "
            "WHEN repository = ANY(%(failed)s) THEN 'failed' ELSE bootstrap END, "
            "bootstrap_done_at = CASE WHEN repository = ANY(%(done)s) THEN %(now)s "
            "ELSE bootstrap_done_at END, "
            "bootstrap_error = CASE WHEN repository = ANY(%(failed)s) "
            "THEN (%(why)s::jsonb ->> repository) ELSE bootstrap_error END, "
            "bootstrap_tries = bootstrap_tries + (repository = ANY(%(again)s))::int, "
            "bootstrap_jobs = CASE WHEN repository = ANY(%(again)s) THEN "
            "bootstrap_jobs[1:1] || (%(jobs)s::jsonb ->> repository)::uuid "
            "ELSE bootstrap_jobs END WHERE repository = ANY(%(all)s)",
            {
                "now": now,
                "done": list(done),
                "failed": list(failed),
                "why": json.dumps(failed),
                "again": list(again),
                "jobs": json.dumps({k: str(v) for k, v in again.items()}),
                "all": list(set(looked) | set(done) | set(failed) | set(again)),
            },
        )

    def bootstraps_failed(self, limit: int = 100) -> list[dict]:
        """Repositories whose bootstrap failed for good, and why."""
        return self._run(
            "SELECT repository, bootstrap_tries, bootstrap_error FROM tracked_repositories "
            "WHERE bootstrap = 'failed' ORDER BY repository LIMIT %s",
            (limit,),
        )

    def bootstrap_again(self, repositories: Iterable[str]) -> int:
        """Failed (or any) bootstraps set back to pending, the next pass starts them anew;
        all or none (none if one is not tracked). Returns how many."""
        names = sorted(set(repositories))
        rows = self._run(
            "UPDATE tracked_repositories SET bootstrap = 'pending', bootstrap_tries = 0, "
            "bootstrap_error = NULL, next_due = now() WHERE repository = ANY(%(names)s) "
            "AND (SELECT count(*) FROM tracked_repositories WHERE repository = ANY(%(names)s))"
            " = %(n)s RETURNING repository",
            {"names": names, "n": len(names)},
        )
        return len(rows)

    def sample(self, breached: int, now: datetime, every: float = 300.0) -> bool:
        """Records the fleet's counts now, unless a sample was taken in the last `every`
        seconds (several sweepers write about one); True if it did."""
        fleet = self.fleet()
        return bool(
            self._run(
                "INSERT INTO fleet_samples (at, tracked, bootstrapping, breached) "
                "SELECT %(at)s, %(tracked)s, %(bootstrapping)s, %(breached)s WHERE NOT EXISTS "
                "(SELECT 1 FROM fleet_samples WHERE at > %(at)s - make_interval(secs => "
                "%(every)s)) ON CONFLICT (at) DO NOTHING RETURNING at",
                {**fleet, "breached": breached, "at": now, "every": every},
            )
        )

    def samples(self, since: datetime) -> list[dict]:
        return self._run(
            "SELECT at, tracked, bootstrapping, breached FROM fleet_samples WHERE at >= %s "
            "ORDER BY at",
            (since,),
        )

    def breached(self) -> list[dict]:
        """The tracked repositories past their target: (repository, effective_tier)."""
        return self._run(
            "SELECT repository, effective_tier FROM repo_freshness WHERE breached "
            "ORDER BY repository"
        )

    # What the planner reads and writes.

    @contextmanager
    def planning(self) -> Iterator[bool]:
        """True if this process may run a planner pass now: a lock held for the pass
        (released if the process dies), so any number of planners, a host's and the
        scheduled workflow's, run one pass at a time and do the work of one."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS mine", (PLANNER_LOCK,))
            mine = bool(row.fetchone()["mine"])
            try:
                yield mine
            finally:
                if mine:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (PLANNER_LOCK,))

    def sync_tiers(self, tiers: Mapping[str, Tier]) -> None:
        """The configured targets into freshness_tiers, so repo_freshness agrees."""
        self._run(
            "INSERT INTO freshness_tiers (tier, target, probe_after, refresh_after) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tier) DO UPDATE SET target = EXCLUDED.target, "
            "probe_after = EXCLUDED.probe_after, refresh_after = EXCLUDED.refresh_after",
            [(t.name, t.target, t.probe_after, t.refresh_after) for t in tiers.values()],
            many=True,
        )

    def load(
        self,
        active: Callable[[list[UUID]], Collection[UUID]],
        now: datetime | None = None,
        limit: int = 5000,
        spare: int = 100,
    ) -> list[Tracked]:
        """The tracked repositories as the planner sees them: due at `now` (at most
        `limit`, most overdue first) and the `spare` next to be due; every one without a
        `now`. `active` names which of the refresh jobs have not ended (the job store)."""
        if now is None:
            rows = self._run(LOAD_ALL)
        else:
            rows = self._run(LOAD, {"now": now, "limit": limit, "spare": spare})
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
                next_due=r["next_due"],
                node_id=r["node_id"],
                workspace=r["workspace"],
                added_at=r["added_at"],
                pull_requests=r["pull_requests"],
                gone=r["gone_at"] is not None,
                comments_watermark=r["comments_watermark"],
                comments_probed_at=r["comments_probed_at"],
                webhooks_checked_at=r["webhooks_checked_at"],
            )
            for r in rows
        ]

    def reschedule(self, due: Iterable[tuple[str, datetime]]) -> None:
        """When the planner next needs to look at each repository (it looked, and had
        nothing to do for it yet)."""
        pairs = list(due)
        if pairs:
            self._run(
                "UPDATE tracked_repositories t SET next_due = d.at FROM unnest(%s::text[], "
                "%s::timestamptz[]) AS d(repository, at) WHERE t.repository = d.repository",
                ([r for r, _ in pairs], [at for _, at in pairs]),
            )

    def bootstrapped(self, started: Iterable[tuple[str, object, object]], now: datetime) -> None:
        """Their bootstraps are enqueued, (repository, recent job, history job): each looked
        at again after its target at the latest."""
        rows = list(started)
        if not rows:
            return
        names, recent, history = (list(c) for c in zip(*rows, strict=True))
        self._run(
            "UPDATE tracked_repositories t SET bootstrap = 'started', "
            "bootstrap_jobs = ARRAY[x.recent, x.history], "
            f"reconcile_at = %(at)s + {AFTER.format(kind='refresh')}, "
            f"next_due = %(at)s + {AFTER.format(kind='target')} "
            "FROM unnest(%(names)s::text[], %(recent)s::uuid[], %(history)s::uuid[]) "
            "AS x(name, recent, history) WHERE t.repository = x.name",
            {"names": names, "recent": recent, "history": history, "at": now},
        )

    def probed(
        self,
        results: Iterable[tuple[str, datetime | None, str | None]],
        now: datetime,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """Probe answers: (repository, newest update, error), and how many pull requests
        each has (`sizes`, where the probe saw it); the ones that failed are looked at
        again after their probe interval."""
        rows = list(results)
        sizes = sizes or {}
        columns = list(map(list, zip(*rows, strict=True))) if rows else [[], [], []]
        self._run(
            "INSERT INTO repo_probes (repository, probed_at, newest_updated_at, last_error, "
            "pull_requests) SELECT r, %s, n, e, s FROM unnest(%s::text[], %s::timestamptz[], "
            "%s::text[], %s::int[]) AS x(r, n, e, s) ON CONFLICT (repository) DO UPDATE SET "
            "probed_at = EXCLUDED.probed_at, newest_updated_at = EXCLUDED.newest_updated_at, "
            "last_error = EXCLUDED.last_error, "
            "pull_requests = COALESCE(EXCLUDED.pull_requests, repo_probes.pull_requests)",
            (now, *columns, [sizes.get(r) for r in columns[0]]),
        )
        failed = [repo for repo, _, error in rows if error]
        if failed:
            self._next(failed, now, "probe")

    def fresh(self, repositories: Iterable[str], as_of: datetime) -> None:
        """Unchanged since what is stored: fresh as of the probe, without a job."""
        names = list(repositories)
        self._run(
            "UPDATE repo_probes SET fresh_as_of = GREATEST(fresh_as_of, %s), "
            "moved_by = 'probe' WHERE repository = ANY(%s)",
            (as_of, names),
        )
        self._next(names, as_of, "probe")

    def delivered(self, answers: Iterable[tuple[str, int, int, datetime]]) -> set[str]:
        """Of the (repository, its id, pull request number, updatedAt) a probe showed as
        newest, those whose pull request is stored at least that new, or that a webhook told
        was (an issue comment's delivery), or with a delivery received since that its apply
        job has yet to act on: no refresh needed for it."""
        rows = list(answers)
        if not rows:
            return set()
        names, ids, numbers, times = (list(c) for c in zip(*rows, strict=True))
        found = self._run(
            DELIVERED,
            (names, ids, numbers, times),
        )
        return {r["r"] for r in found}

    def looked(self, repositories: Iterable[str], now: datetime) -> None:
        """Probed, nothing to do: looked at again after the probe interval."""
        self._next(list(repositories), now, "probe")

    def _next(self, names: list[str], at: datetime, kind: str) -> None:
        """Next looked at `at` plus the tier's probe_after, refresh_after or target."""
        if names:
            self._run(
                f"UPDATE tracked_repositories t SET next_due = %(at)s + {AFTER.format(kind=kind)} "
                "WHERE t.repository = ANY(%(names)s)",
                {"at": at, "names": names},
            )

    def refreshing(self, changes: Iterable[tuple[str, object]], now: datetime) -> None:
        """The refresh job enqueued for each (for changes found, or a bootstrap): looked
        at again when it is done, or after the tier's target if it is not."""
        pairs = list(changes)
        if not pairs:
            return
        self._run(
            "INSERT INTO repo_probes (repository, changed_at, refresh_job) "
            "SELECT r, %s, j FROM unnest(%s::text[], %s::uuid[]) AS x(r, j) "
            "ON CONFLICT (repository) DO UPDATE SET changed_at = EXCLUDED.changed_at, "
            "refresh_job = EXCLUDED.refresh_job, pending_since = NULL",
            (now, [repo for repo, _ in pairs], [job for _, job in pairs]),
        )
        self._next([repo for repo, _ in pairs], now, "target")

    def pending(self, repositories: Iterable[str], now: datetime) -> None:
        """A probe found changes that wait for their refresh (at `refresh_after`)."""
        names = list(repositories)
        if not names:
            return
        self._run(
            "UPDATE repo_probes SET pending_since = COALESCE(pending_since, %s) "
            "WHERE repository = ANY(%s)",
            (now, names),
        )
        self._run(
            "UPDATE tracked_repositories t SET next_due = COALESCE(p.fresh_as_of, %(at)s) + "
            f"{AFTER.format(kind='refresh')} FROM repo_probes p "
            "WHERE p.repository = t.repository AND t.repository = ANY(%(names)s)",
            {"at": now, "names": names},
        )
