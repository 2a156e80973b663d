-- Fair turns: workers and the sweeper take a lane's waiting jobs by priority, then by
-- turn_at, not by age alone. A new job's turn is its creation time pushed back by how
-- much of the same priority its repository (60 s a job) and its share (10 s a job: the
-- workspace, else the repository's owner) already have waiting, so a 100,000-PR
-- backfill's children or one noisy workspace take turns with everyone else instead of
-- queueing ahead of them. Priority still comes first: real-time work keeps its head
-- start. The counts are capped (1,000 looked at), so an enqueue's cost stays bounded.
ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS share text;
ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS turn_at timestamptz;

UPDATE job_heads SET turn_at = created_at, share = split_part(repository, '/', 1)
WHERE turn_at IS NULL AND status NOT IN ('completed', 'failed', 'cancelled', 'quarantined');

CREATE INDEX IF NOT EXISTS job_heads_turns
    ON job_heads (lane, (CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END),
                  turn_at)
    WHERE status IN ('routed', 'dispatched');
DROP INDEX IF EXISTS job_heads_queue;

-- What a repository and a share have waiting, per priority (counted at each enqueue).
CREATE INDEX IF NOT EXISTS job_heads_waiting_repository ON job_heads (repository, priority)
    WHERE status IN ('queued', 'routed', 'dispatched', 'retry_scheduled');
CREATE INDEX IF NOT EXISTS job_heads_waiting_share ON job_heads (share, priority)
    WHERE status IN ('queued', 'routed', 'dispatched', 'retry_scheduled');

CREATE OR REPLACE FUNCTION jobstore_waiting(by_repository text, by_share text, prio text)
RETURNS TABLE (repository_n bigint, share_n bigint)
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT count(*) FROM (SELECT 1 FROM job_heads
            WHERE repository = by_repository AND priority = prio
              AND status IN ('queued', 'routed', 'dispatched', 'retry_scheduled')
            LIMIT 1000) r),
        (SELECT count(*) FROM (SELECT 1 FROM job_heads
            WHERE share = by_share AND priority = prio
              AND status IN ('queued', 'routed', 'dispatched', 'retry_scheduled')
            LIMIT 1000) s)
$$;

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
        -- In job id order: two writers of the same heads never deadlock. A job seen for
        -- the first time gets its turn (its own batch's earlier jobs count as waiting).
        INSERT INTO job_heads (job_id, job_type, repository, status, lane, priority, attempt,
                               version, dedupe_key, parent_id, not_before, created_at,
                               last_event_at, share, turn_at)
        SELECT h.job_id, h.job_type, h.repository, h.status, h.lane, h.priority, h.attempt,
               h.version, h.dedupe_key, h.parent_id, h.not_before, h.created_at,
               h.last_event_at, h.share,
               CASE WHEN h.old THEN h.created_at ELSE h.created_at + make_interval(secs =>
                   60 * (least(w.repository_n, 1000) + h.in_repository - 1)
                   + 10 * (least(w.share_n, 1000) + h.in_share - 1)) END
        FROM (
            SELECT n.*,
                   EXISTS (SELECT 1 FROM job_heads o WHERE o.job_id = n.job_id) AS old,
                   row_number() OVER (PARTITION BY n.repository, n.priority
                                      ORDER BY n.job_id) AS in_repository,
                   row_number() OVER (PARTITION BY n.share, n.priority
                                      ORDER BY n.job_id) AS in_share
            FROM jsonb_populate_recordset(NULL::job_heads, heads) n
        ) h
        LEFT JOIN LATERAL (
            SELECT * FROM jobstore_waiting(h.repository, h.share, h.priority) WHERE NOT h.old
        ) w ON true
        ORDER BY h.job_id
        ON CONFLICT (job_id) DO UPDATE SET
            status = EXCLUDED.status, lane = EXCLUDED.lane, priority = EXCLUDED.priority,
            attempt = EXCLUDED.attempt, version = EXCLUDED.version,
            not_before = EXCLUDED.not_before, last_event_at = EXCLUDED.last_event_at
        WHERE job_heads.version < EXCLUDED.version;
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
