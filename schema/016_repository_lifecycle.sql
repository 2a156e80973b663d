-- Repositories as GitHub moves them (capture/freshness/, jobstore.store): tracked ones are
-- known by GitHub's ids once probed, so a rename or transfer is followed, a repository
-- GitHub no longer shows is marked gone (and probed rarely, in case it comes back), and
-- every such change is an append-only row of repository_events.

ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS repo_id bigint;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS node_id text;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS gone_at timestamptz;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS gone_reason text;
CREATE UNIQUE INDEX IF NOT EXISTS tracked_repositories_repo_id
    ON tracked_repositories (repo_id) WHERE repo_id IS NOT NULL;

-- renamed, transferred (old_name -> new_name), gone (reason), back. A rename moves the
-- job views' repository name forward for jobs created before it; a rebuild of the views
-- applies them again, in order.
CREATE TABLE IF NOT EXISTS repository_events (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('renamed', 'transferred', 'gone', 'back')),
    repo_id  bigint,
    old_name text,
    new_name text,
    reason   text
);
CREATE INDEX IF NOT EXISTS repository_events_names ON repository_events (old_name);
CREATE INDEX IF NOT EXISTS repository_events_at ON repository_events (at);

-- A repository's name may be taken by another one after a rename (GitHub then drops the
-- redirect): the stored row that held it keeps it, marked stale, until its own rename is
-- seen; the live names stay unique.
ALTER TABLE repositories DROP CONSTRAINT IF EXISTS repositories_full_name_key;
ALTER TABLE repositories ADD COLUMN IF NOT EXISTS name_stale_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS repositories_live_name
    ON repositories (lower(full_name)) WHERE name_stale_at IS NULL;

-- Contributors by node id, re-read in batches (nodes(ids:)) on a slow cadence, so a login
-- renamed with no new activity is followed; checked_at orders who is next.
ALTER TABLE contributors ADD COLUMN IF NOT EXISTS node_id text;
ALTER TABLE contributors ADD COLUMN IF NOT EXISTS checked_at timestamptz;
CREATE INDEX IF NOT EXISTS contributors_next_check
    ON contributors (checked_at NULLS FIRST) WHERE node_id IS NOT NULL;

-- Edits and deletions that may not move a pull request's updatedAt (GitHub's docs do not
-- say): the newest comment update a refresh has seen through the repository-level comment
-- listings, and when the recently active pull requests are next reconciled whole (at the
-- tier's refresh interval: within the target).
ALTER TABLE refresh_watermarks ADD COLUMN IF NOT EXISTS comments_at timestamptz;
-- when the planner last read the repository's newest comment (CAPTURE_COMMENT_PROBES)
ALTER TABLE repo_probes ADD COLUMN IF NOT EXISTS comments_probed_at timestamptz;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS reconcile_at timestamptz
    NOT NULL DEFAULT now() + interval '1 day';
CREATE INDEX IF NOT EXISTS tracked_repositories_reconcile
    ON tracked_repositories (reconcile_at) WHERE gone_at IS NULL;

-- What the capture has seen of GitHub's behaviour where its docs are silent, once each:
-- 'edits-move-nothing' (a refresh found comments created or edited on pull requests whose
-- updatedAt did not move): from then on reconciliations run (CAPTURE_RECONCILE=auto).
CREATE TABLE IF NOT EXISTS github_behaviour (
    name    text PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    detail  text NOT NULL
);

-- Gone repositories are shown, and are not breached.
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
    t.gone_at IS NULL AND (p.fresh_as_of IS NULL OR now() - p.fresh_as_of
        > CASE WHEN t.promoted_until > now() THEN hot.target ELSE e.target END) AS breached,
    p.refresh_job,
    COALESCE(p.last_error, (SELECT j.last_error FROM capture_jobs j
                            WHERE j.job_id = p.refresh_job AND j.status = 'failed'))
      AS last_error,
    t.gone_at,
    t.gone_reason
FROM tracked_repositories t
JOIN freshness_tiers e ON e.tier = t.tier
CROSS JOIN (SELECT target FROM freshness_tiers WHERE tier = 'hot') hot
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository;
