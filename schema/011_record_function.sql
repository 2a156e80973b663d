-- Recording a save in one statement (jobstore.recorder): the jobs' heads, the dispatch
-- outcomes and the routed notifications with the events, under the table lock that keeps
-- notification ids in commit order, as eventsourcing's own insert does (with its NOTIFY
-- on the events table's channel, for followers). One round trip, instead of one for
-- BEGIN, each statement and COMMIT.
--
-- It names eventsourcing's events table (jobs_events) and its row type
-- (stored_event_uuid), which eventsourcing creates before these files run; the tests
-- save and read through it, so an eventsourcing upgrade that changed them would fail.
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
