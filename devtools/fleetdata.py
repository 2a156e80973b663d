"""Captured data shaped like a fleet's, stored in bulk with SQL (no GitHub involved): the
load the per-job queries are measured and EXPLAINed against. At 10,000 repositories:
about 250,000 pull requests, 1.9 M comments, 0.5 M reviews, 0.75 M changed files and
0.5 M commits, plus one repository (`fleet/big`) of BIG pull requests."""

from __future__ import annotations

import time

import psycopg

BASE = 5_000_000_000  # ids far above the sandbox's, so both can share a database
BIG = "fleet/big"
BIG_PULLS = 256

STATEMENTS = (
    "INSERT INTO contributors (id, login, kind, node_id, checked_at) SELECT %(base)s + g, "
    "'fleet-user-' || g, 'User', 'U_' || (%(base)s + g), now() - make_interval(mins => g) "
    "FROM generate_series(1, 20000) g ON CONFLICT DO NOTHING",
    # Repositories; the last one is the big one.
    "INSERT INTO repositories (id, node_id, full_name, created_at) "
    "SELECT %(base)s + g, 'R_fleet_' || g, "
    "CASE WHEN g = %(repos)s THEN %(big)s ELSE 'fleet-' || (g %% 500) || '/repo-' || g END, "
    "now() - interval '3 years' FROM generate_series(1, %(repos)s) g ON CONFLICT DO NOTHING",
    # Pull requests: 1 to 50 per repository (25 on average), BIG_PULLS for the big one.
    "INSERT INTO pull_requests (id, node_id, repository_id, number, title, state, is_draft, "
    "author_id, created_at, updated_at, details_at, additions, deletions, changed_files, "
    "commits_count) "
    "SELECT %(base)s * 2 + (r.id - %(base)s) * 1000 + n, 'PR_fleet_' || r.id || '_' || n, "
    "r.id, n, 'a change', 'MERGED', false, %(base)s + 1 + (n %% 20000), "
    "now() - make_interval(hours => (n * 7 + r.id %% 13)::int), "
    "now() - make_interval(hours => (n * 5 + r.id %% 11)::int), now(), 10, 2, 3, 2 "
    "FROM repositories r CROSS JOIN LATERAL generate_series(1, CASE WHEN r.full_name = "
    "%(big)s THEN %(big_pulls)s ELSE 1 + (r.id %% 50)::int END) n "
    "WHERE r.id > %(base)s ON CONFLICT DO NOTHING",
    # Issue comments and review comments: 1 to 14 per pull request (7.5 on average).
    "INSERT INTO comments (id, pull_request_id, kind, author_id, body, created_at, updated_at, "
    "in_reply_to_id) "
    "SELECT %(base)s * 4 + (p.id - %(base)s * 2) * 16 + c, p.id, "
    "CASE WHEN c %% 3 = 0 THEN 'review' ELSE 'issue' END, %(base)s + 1 + (c %% 20000), "
    "'looks good', p.created_at, p.updated_at, NULL "
    "FROM pull_requests p CROSS JOIN LATERAL generate_series(1, 1 + (p.id %% 14)::int) c "
    "WHERE p.id > %(base)s * 2 ON CONFLICT DO NOTHING",
    "INSERT INTO reviews (id, pull_request_id, author_id, state, body, submitted_at) "
    "SELECT %(base)s * 6 + (p.id - %(base)s * 2) * 4 + v, p.id, %(base)s + 1 + (v %% 20000), "
    "'APPROVED', '', p.updated_at "
    "FROM pull_requests p CROSS JOIN generate_series(1, 2) v "
    "WHERE p.id > %(base)s * 2 ON CONFLICT DO NOTHING",
    "INSERT INTO pr_files (pull_request_id, path, additions, deletions, change_type) "
    "SELECT p.id, 'src/file_' || f || '.py', 3, 1, 'MODIFIED' "
    "FROM pull_requests p CROSS JOIN generate_series(1, 3) f "
    "WHERE p.id > %(base)s * 2 ON CONFLICT DO NOTHING",
    "INSERT INTO commits (pull_request_id, sha, message, authored_at, committed_at) "
    "SELECT p.id, md5(p.id::text || '-' || c), 'a commit', p.created_at, p.created_at "
    "FROM pull_requests p CROSS JOIN generate_series(1, 2) c "
    "WHERE p.id > %(base)s * 2 ON CONFLICT DO NOTHING",
)
TABLES = ("repositories", "pull_requests", "comments", "reviews", "pr_files", "commits")


def fill(url: str, repos: int = 10_000) -> dict[str, float]:
    """Stores `repos` repositories' data (the last is BIG, with BIG_PULLS pull requests);
    returns each table's rows and the seconds it took."""
    started = time.monotonic()
    params = {"base": BASE, "repos": repos, "big": BIG, "big_pulls": BIG_PULLS}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for statement in STATEMENTS:
            conn.execute(statement, params)
        for table in TABLES:
            conn.execute(f"ANALYZE {table}")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES
        }
    return {**counts, "seconds": round(time.monotonic() - started, 1)}
