-- A bootstrap's life: pending (nothing enqueued), started (the last days and the whole
-- history enqueued), done (both completed: the history index ran from 2008, GitHub's
-- first year), failed (the history failed for good CAPTURE_BOOTSTRAP_TRIES times;
-- reported, tried again by `bin/track bootstrap --again`). The planner checks started
-- ones oldest-checked first, a bounded number a pass.
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS bootstrap_tries integer NOT NULL
    DEFAULT 0;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS bootstrap_checked_at timestamptz;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS bootstrap_done_at timestamptz;
ALTER TABLE tracked_repositories ADD COLUMN IF NOT EXISTS bootstrap_error text;

CREATE INDEX IF NOT EXISTS tracked_bootstrap_started
    ON tracked_repositories (bootstrap_checked_at NULLS FIRST)
    WHERE bootstrap = 'started';
CREATE INDEX IF NOT EXISTS tracked_bootstrap_open
    ON tracked_repositories (bootstrap) WHERE bootstrap <> 'done';
