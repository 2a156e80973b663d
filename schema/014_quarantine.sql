-- Jobs whose events cannot be made into a job (a hostile input or a bug left a record no
-- load survives): set aside so no worker, sweeper or view stops on them. Their heads say
-- 'quarantined' (out of every queue); the events stay as they are, for whoever mends them.
CREATE TABLE IF NOT EXISTS quarantined_jobs (
    job_id     uuid PRIMARY KEY,
    found_by   text NOT NULL,         -- worker, sweeper, views, ...
    error      text NOT NULL,         -- the error's type and its first words
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    seen       integer NOT NULL DEFAULT 1
);
-- bin/jobs quarantined and every /metrics scrape read the most recently seen first.
CREATE INDEX IF NOT EXISTS quarantined_jobs_last_at ON quarantined_jobs (last_at DESC);
