-- The current state of each job, written in the same transaction as its events
-- (jobstore.recorder), so the store can find work without replaying streams.
CREATE TABLE IF NOT EXISTS job_heads (
    job_id        uuid PRIMARY KEY,
    job_type      text        NOT NULL,
    repository    text        NOT NULL,
    status        text        NOT NULL,
    lane          text,
    priority      text        NOT NULL,
    attempt       integer     NOT NULL,
    version       integer     NOT NULL,
    dedupe_key    text        NOT NULL,
    parent_id     uuid,
    not_before    timestamptz,
    created_at    timestamptz NOT NULL,
    last_event_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS job_heads_active
    ON job_heads (status, lane, last_event_at)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');

CREATE INDEX IF NOT EXISTS job_heads_dedupe
    ON job_heads (dedupe_key)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');

CREATE INDEX IF NOT EXISTS job_heads_parent ON job_heads (parent_id) WHERE parent_id IS NOT NULL;
