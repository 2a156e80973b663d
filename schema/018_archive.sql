-- The archive: finished jobs' event streams moved out of jobs_events (jobstore.archive,
-- `bin/jobs archive`), many jobs to a chunk compressed in bulk (`format`: how `data` is
-- encoded, see jobstore/archive.py). Partitioned by the month the jobs finished, so a
-- month can be backed up, detached or dropped on its own (DEPLOY.md). job_heads keeps
-- each archived job's row and says where its events went; capture_jobs keeps its row.
CREATE SEQUENCE IF NOT EXISTS job_archive_chunk_seq;

CREATE TABLE IF NOT EXISTS job_archive (
    month          date        NOT NULL,
    chunk          bigint      NOT NULL,
    jobs           integer     NOT NULL,
    events         integer     NOT NULL,
    raw_bytes      bigint      NOT NULL,
    first_finished timestamptz NOT NULL,
    last_finished  timestamptz NOT NULL,
    archived_at    timestamptz NOT NULL,
    format         text        NOT NULL,
    data           bytea       NOT NULL,
    PRIMARY KEY (month, chunk)
) PARTITION BY RANGE (month);

ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS archived_at timestamptz;
ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS archive_month date;
ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS archive_chunk bigint;

-- The archiver's next batch: the oldest finished jobs not yet archived.
CREATE INDEX IF NOT EXISTS job_heads_archivable ON job_heads (last_event_at)
    WHERE archived_at IS NULL AND status IN ('completed', 'failed', 'cancelled');


-- A save that would append to an archived job (a replay of one failed long ago) is
-- refused as a conflict: its events are in the archive, not here. Checked after the
-- heads are written, so an archive committed meanwhile is seen.
CREATE OR REPLACE FUNCTION jobstore_record(
    events stored_event_uuid[],
    heads jsonb,
    dispatches jsonb,
    routed text[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF heads IS NOT NULL THEN
        -- In job id order: two writers of the same heads never deadlock.
        INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, attempt,
                               version, dedupe_key, parent_id, not_before, created_at,
                               last_event_at)
        SELECT job_id, job_type, repository, status, lane, priority, attempt, version,
               dedupe_key, parent_id, not_before, created_at, last_event_at
        FROM jsonb_populate_recordset(NULL::job_heads, heads) ORDER BY job_id
        ON CONFLICT (job_id) DO UPDATE SET
            status = EXCLUDED.status, lane = EXCLUDED.lane, priority = EXCLUDED.priority,
            attempt = EXCLUDED.attempt, version = EXCLUDED.version,
            not_before = EXCLUDED.not_before, last_event_at = EXCLUDED.last_event_at
        WHERE job_heads.version < EXCLUDED.version;
        IF EXISTS (SELECT 1 FROM job_heads h
                   JOIN jsonb_populate_recordset(NULL::job_heads, heads) x USING (job_id)
                   WHERE h.archived_at IS NOT NULL) THEN
            RAISE EXCEPTION 'jobstore: job archived' USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    IF dispatches IS NOT NULL THEN
        INSERT INTO lane_dispatches (lane, job_id, ok, error, at)
        SELECT lane, job_id, ok, error, at
        FROM jsonb_populate_recordset(NULL::lane_dispatches, dispatches);
    END IF;
    FOREACH payload IN ARRAY coalesce(routed, '{}') LOOP
        PERFORM pg_notify('jobstore_routed', payload);
    END LOOP;
    LOCK TABLE jobs_events IN EXCLUSIVE MODE;
    PERFORM pg_notify('jobs_events', '');
    RETURN QUERY
        INSERT INTO jobs_events (originator_id, originator_version, topic, state)
        SELECT originator_id, originator_version, topic, state FROM unnest(events)
        RETURNING notification_id;
END
$$;
