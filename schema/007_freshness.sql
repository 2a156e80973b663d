-- The freshness loop (capture/freshness/): tracked repositories, their tiers' targets,
-- what the planner last saw of each, and the watermark of whole refreshes.

-- A tier's freshness target, how old the data may get before the planner probes, and
-- before a change a probe found is refreshed (changes in between are coalesced into one
-- refresh). The planner writes its configured targets here at every pass.
CREATE TABLE IF NOT EXISTS freshness_tiers (
    tier          text PRIMARY KEY,
    target        interval NOT NULL,
    probe_after   interval NOT NULL,
    refresh_after interval NOT NULL
);
INSERT INTO freshness_tiers (tier, target, probe_after, refresh_after) VALUES
    ('hot', '15 minutes', '5 minutes', '10 minutes'),
    ('warm', '6 hours', '2 hours', '4 hours'),
    ('cold', '24 hours', '8 hours', '16 hours')
ON CONFLICT (tier) DO NOTHING;

CREATE TABLE IF NOT EXISTS tracked_repositories (
    repository      text PRIMARY KEY,  -- owner/name, lowercase
    tier            text NOT NULL REFERENCES freshness_tiers (tier),
    workspace       text,
    added_at        timestamptz NOT NULL,
    -- a person asked for it (bin/enqueue --trigger manual, the HTTP API): hot until then
    promoted_until  timestamptz,
    promoted_reason text,
    -- pending (nothing enqueued), started (the last 30 days, then history, enqueued)
    bootstrap       text NOT NULL DEFAULT 'pending',
    bootstrap_jobs  uuid[] NOT NULL DEFAULT '{}'
);

-- What the planner knows of each tracked repository's freshness.
CREATE TABLE IF NOT EXISTS repo_probes (
    repository        text PRIMARY KEY,
    probed_at         timestamptz,  -- the last change probe
    newest_updated_at timestamptz,  -- the newest pull request update GitHub showed then
    fresh_as_of       timestamptz,  -- every change before this is stored
    changed_at        timestamptz,  -- when a refresh (or the bootstrap) was last enqueued
    pending_since     timestamptz,  -- a probe found changes; refreshed at refresh_after
    refresh_job       uuid,         -- the refresh enqueued for them
    last_error        text
);

-- repository-refresh: the newest updatedAt of pull requests captured whole (reviews,
-- threads, comments, files, commits), written after the last of them is stored.
CREATE TABLE IF NOT EXISTS refresh_watermarks (
    repository  text PRIMARY KEY,
    updated_at  timestamptz NOT NULL,
    advanced_at timestamptz NOT NULL DEFAULT now()
);

-- Per tracked repository: how fresh its data is against its tier's target.
CREATE OR REPLACE VIEW repo_freshness AS
SELECT
    t.repository,
    t.tier,
    CASE WHEN t.promoted_until > now() THEN 'hot' ELSE t.tier END AS effective_tier,
    t.workspace,
    t.bootstrap,
    e.target,
    (SELECT max(h.last_event_at) FROM job_heads h
      WHERE lower(h.repository) = t.repository AND h.status = 'completed'
        AND h.job_type = 'repository-refresh') AS last_success,
    p.fresh_as_of,
    p.probed_at,
    p.newest_updated_at,
    w.updated_at AS watermark,
    now() - p.fresh_as_of AS age,
    p.fresh_as_of + CASE WHEN p.pending_since IS NULL THEN e.probe_after
                         ELSE e.refresh_after END AS next_due,
    p.pending_since IS NOT NULL AS change_pending,
    p.fresh_as_of IS NULL OR now() - p.fresh_as_of > e.target AS breached,
    p.refresh_job,
    COALESCE(p.last_error, (SELECT j.last_error FROM capture_jobs j
                            WHERE j.job_id = p.refresh_job AND j.status = 'failed'))
      AS last_error
FROM tracked_repositories t
JOIN freshness_tiers e
  ON e.tier = CASE WHEN t.promoted_until > now() THEN 'hot' ELSE t.tier END
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository;
