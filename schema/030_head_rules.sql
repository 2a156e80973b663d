-- The routing rule of each job's head (routed by which rule of the table, or "parent":
-- a child its parent's run plans), so the sweeper tells from the queue index which
-- waiting jobs it leaves alone, without reading each one's events every pass (a
-- monorepo's backfill keeps hundreds of children waiting for its matrix).
ALTER TABLE job_heads ADD COLUMN IF NOT EXISTS rule text;

-- Jobs waiting now take theirs from the capture_jobs projection; any it has not reached
-- stay NULL, and the sweeper reads those jobs' events as before.
UPDATE job_heads h SET rule = c.route_rule
FROM capture_jobs c
WHERE c.job_id = h.job_id AND h.rule IS NULL AND h.status = 'routed';

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
                               last_event_at, share, turn_at, rule)
        SELECT h.job_id, h.job_type, h.repository, h.status, h.lane, h.priority, h.attempt,
               h.version, h.dedupe_key, h.parent_id, h.not_before, h.created_at,
               h.last_event_at, h.share,
               CASE WHEN h.old THEN h.created_at ELSE h.created_at + make_interval(secs =>
                   60 * (least(w.repository_n, 1000) + h.in_repository - 1)
                   + 10 * (least(w.share_n, 1000) + h.in_share - 1)) END,
               h.rule
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
            not_before = EXCLUDED.not_before, last_event_at = EXCLUDED.last_event_at,
            rule = EXCLUDED.rule
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
