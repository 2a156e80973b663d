-- The dashboard's latest failures, read by an index instead of a sort of every job.
CREATE INDEX IF NOT EXISTS capture_jobs_failures ON capture_jobs (last_event_at DESC)
    WHERE last_error IS NOT NULL AND failures > 0;
