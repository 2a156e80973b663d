-- Acting on GitHub's webhook deliveries (capture.webhooks): each stored delivery moves
-- received -> processed (what its payload carries stored, guarded by GitHub's updated_at),
-- or received -> refresh -> processed (its pull request captured by a targeted refresh
-- after a short coalescing window), or to quarantined (a payload that could not be
-- applied: kept, shown, never retried blindly). installation, installation_repositories
-- and repository deliveries are the planner's (status 'planner' until applied).
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS processed_at timestamptz;
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS job_id uuid;
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS note text;
-- arrival order (deliveries received in the same instant are applied as they came)
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS arrival bigserial;
-- a repository's open deliveries, oldest first (the apply job's read)
CREATE INDEX IF NOT EXISTS github_deliveries_open
    ON github_deliveries (repository_id, received_at, arrival)
    WHERE status IN ('received', 'refresh');
-- every open delivery, oldest first (the planner's catch-up, the lag)
CREATE INDEX IF NOT EXISTS github_deliveries_waiting ON github_deliveries (received_at)
    WHERE status IN ('received', 'refresh', 'planner');
-- per installation, the newest delivery (the silence alert)
CREATE INDEX IF NOT EXISTS github_deliveries_installation
    ON github_deliveries (installation_id, received_at DESC) WHERE installation_id IS NOT NULL;

-- The App's installations as webhooks told us (installation events) and as the
-- reconciler confirmed them: every delivery GitHub attempted before confirmed_through
-- is stored here, or was redelivered.
CREATE TABLE IF NOT EXISTS webhook_installations (
    installation_id   bigint      PRIMARY KEY,
    account           text,
    created_at        timestamptz NOT NULL,
    suspended_at      timestamptz,
    deleted_at        timestamptz,
    confirmed_through timestamptz,
    checked_at        timestamptz
);

-- Redeliveries the reconciler asked GitHub for, once per failed delivery and pass.
CREATE TABLE IF NOT EXISTS webhook_redeliveries (
    guid         text        PRIMARY KEY,  -- X-GitHub-Delivery
    hook_id      bigint      NOT NULL,     -- the attempt asked to be sent again
    event        text,
    requested_at timestamptz NOT NULL,
    requests     integer     NOT NULL DEFAULT 1,
    last_error   text,
    failed_at    timestamptz NOT NULL,     -- GitHub's first attempt of it
    resolved_at  timestamptz               -- seen stored here
);
CREATE INDEX IF NOT EXISTS webhook_redeliveries_open ON webhook_redeliveries (failed_at)
    WHERE resolved_at IS NULL;

-- One row per reconciler pass (an audit of what it found and did).
CREATE TABLE IF NOT EXISTS webhook_reconciles (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    listed      integer     NOT NULL,
    failed      integer     NOT NULL,
    redelivered integer     NOT NULL,
    unresolved  integer     NOT NULL,
    through     timestamptz,
    error       text,
    deep        boolean     NOT NULL DEFAULT true  -- false: a quick recheck (no confirmation)
);
CREATE INDEX IF NOT EXISTS webhook_reconciles_at ON webhook_reconciles (at DESC);
CREATE INDEX IF NOT EXISTS webhook_reconciles_deep ON webhook_reconciles (at DESC) WHERE deep;

-- A tracked repository covered by an installation whose webhooks are confirmed is probed
-- at its target (a safety net), not a third of it; moved_by says what last moved its
-- freshness: refresh, probe or webhook.
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS installation_id bigint;
CREATE INDEX IF NOT EXISTS tracked_repositories_installation
    ON tracked_repositories (installation_id) WHERE installation_id IS NOT NULL;
ALTER TABLE repo_probes ADD COLUMN IF NOT EXISTS moved_by text;

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
    t.gone_reason,
    p.moved_by,
    t.installation_id
FROM tracked_repositories t
JOIN freshness_tiers e ON e.tier = t.tier
CROSS JOIN (SELECT target FROM freshness_tiers WHERE tier = 'hot') hot
LEFT JOIN repo_probes p ON p.repository = t.repository
LEFT JOIN refresh_watermarks w ON w.repository = t.repository;

-- The pull requests a delivery waits to have refreshed (status 'refresh').
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS refresh_numbers integer[];

-- Counters (Prometheus counters read them): deliveries received and processed, per event
-- and outcome, moved in the transactions that receive and apply them.
CREATE TABLE IF NOT EXISTS webhook_counts (
    name  text   NOT NULL,  -- received, duplicate, processed, refreshed, quarantined
    event text   NOT NULL,
    n     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, event)
);

-- A repository's quarantined deliveries (its freshness is not confirmed by webhooks).
CREATE INDEX IF NOT EXISTS github_deliveries_quarantined ON github_deliveries (repository_id)
    WHERE status = 'quarantined';
