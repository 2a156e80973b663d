-- The freshness planner at fleet size: each tracked repository's next look, so a pass
-- reads only what is due (by an index), and the last successful refresh kept on the
-- probe row, so repo_freshness reads no job history.

ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS next_due timestamptz;
UPDATE tracked_repositories SET next_due = added_at WHERE next_due IS NULL;
ALTER TABLE tracked_repositories ALTER COLUMN next_due SET NOT NULL;
ALTER TABLE tracked_repositories ALTER COLUMN next_due SET DEFAULT now();
CREATE INDEX IF NOT EXISTS tracked_repositories_due ON tracked_repositories (next_due);

ALTER TABLE repo_probes ADD COLUMN IF NOT EXISTS last_success timestamptz;
UPDATE repo_probes p SET last_success = s.at
FROM (SELECT lower(repository) AS repository, max(last_event_at) AS at FROM job_heads
      WHERE status = 'completed' AND job_type = 'repository-refresh' GROUP BY 1) s
WHERE s.repository = p.repository AND p.last_success IS NULL;

-- A tier's interval (probe_after, refresh_after or target) for a repository, promoted
-- to hot until `promoted_until`, at `at`: what the writers of next_due add.
CREATE OR REPLACE FUNCTION freshness_after(
    tier text, promoted_until timestamptz, at timestamptz, kind text
) RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT CASE kind WHEN 'probe' THEN probe_after WHEN 'refresh' THEN refresh_after
                     ELSE target END
    FROM freshness_tiers f
    WHERE f.tier = CASE WHEN promoted_until > at THEN 'hot' ELSE freshness_after.tier END
$$;

-- Its tier (or hot, while promoted) joined by equality, so the planner estimates the
-- rows rightly and hashes the joins: 50,000 repositories read in a few hundred ms.
CREATE OR REPLACE VIEW repo_freshness AS
SELECT
    t.repository,
    t.tier,
    CASE WHEN t.promoted_until > now() THEN 'hot' ELSE t.tier END AS effective_tier,
    t.workspace,
    t.bootstrap,
    CASE WHEN t.promoted_until > now() THEN hot.target ELSE e.target END AS target,
    p.last_success,
    p.fresh_as_of,
    p.probed_at,
    p.newest_updated_at,
    w.updated_at AS watermark,
    now() - p.fresh_as_of AS age,
    t.next_due,
    p.pending_since IS NOT NULL AS change_pending,
    p.fresh_as_of IS NULL OR now() - p.fresh_as_of
        > CASE WHEN t.promoted_until > now() THEN hot.target ELSE e.target END AS breached,
    p.refresh_job,
    COALESCE(p.last_error, (SELECT j.last_error FROM capture_jobs j
                            WHERE j.job_id = p.refresh_job AND j.status = 'failed'))
      AS last_error
FROM tracked_repositories t
JOIN freshness_tiers e ON e.tier = t.tier
CROSS JOIN (SELECT target FROM freshness_tiers WHERE tier = 'hot') hot
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository;
