-- Counters and histograms of the job log, kept current by the views (jobstore.views, from
-- jobstore.rollups) in the transaction that moves capture_jobs: per five minutes, lane and
-- job type in job_rollups, all-time in job_totals. Statistics, metrics and the dashboard
-- read these few rows; what they cost depends on the window, never on history.
--
-- enqueued: jobs first routed to the lane; started: attempts started; completed, cancelled:
-- jobs ended; attempts_failed: attempts that failed; retried: failures followed by another
-- attempt (a replay too), so jobs failed for good are attempts_failed - retried;
-- rescheduled: attempts ended for a later one without failing (a rate-limit reset);
-- wait_hist: time from enqueue to first start; run_hist: a completed job's run time.
-- Histograms count observations per bucket of jobstore_seconds_bounds() (not cumulative;
-- the last bucket is +Inf).

CREATE OR REPLACE FUNCTION jobstore_seconds_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE AS
$$ SELECT '{0.1,0.5,1,2.5,5,15,30,60,120,300,600,900,1800,3600,7200,14400,43200,86400}'::float8[] $$;

CREATE TABLE IF NOT EXISTS job_rollups (
    bucket            timestamptz NOT NULL,
    lane              text        NOT NULL,
    job_type          text        NOT NULL,
    enqueued          bigint      NOT NULL DEFAULT 0,
    started           bigint      NOT NULL DEFAULT 0,
    completed         bigint      NOT NULL DEFAULT 0,
    attempts_failed   bigint      NOT NULL DEFAULT 0,
    retried           bigint      NOT NULL DEFAULT 0,
    rescheduled       bigint      NOT NULL DEFAULT 0,
    cancelled         bigint      NOT NULL DEFAULT 0,
    dispatch_failures bigint      NOT NULL DEFAULT 0,
    fallbacks_in      bigint      NOT NULL DEFAULT 0,
    fallbacks_out     bigint      NOT NULL DEFAULT 0,
    items             bigint      NOT NULL DEFAULT 0,
    api_points        bigint      NOT NULL DEFAULT 0,
    runs              bigint      NOT NULL DEFAULT 0,
    steps             bigint      NOT NULL DEFAULT 0,
    billed_minutes    bigint      NOT NULL DEFAULT 0,
    run_seconds       double precision NOT NULL DEFAULT 0,
    wait_sum          double precision NOT NULL DEFAULT 0,
    run_sum           double precision NOT NULL DEFAULT 0,
    wait_hist         bigint[]    NOT NULL,
    run_hist          bigint[]    NOT NULL,
    PRIMARY KEY (bucket, lane, job_type)
);

CREATE TABLE IF NOT EXISTS job_totals (LIKE job_rollups INCLUDING DEFAULTS);
ALTER TABLE job_totals DROP COLUMN IF EXISTS bucket;
ALTER TABLE job_totals ADD PRIMARY KEY (lane, job_type);

-- Histograms added bucket by bucket (a NULL is all zeros).
CREATE OR REPLACE FUNCTION jobstore_add_counts(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
        (SELECT array_agg(x + y ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i))
    END
$$;

-- The q-quantile of a histogram, interpolated within its bucket as Prometheus'
-- histogram_quantile() does (an observation in +Inf reads as the highest finite bound).
CREATE OR REPLACE FUNCTION jobstore_quantile(q double precision, counts bigint[])
RETURNS double precision LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bounds double precision[] := jobstore_seconds_bounds();
    total bigint;
    seen bigint := 0;
    lower double precision := 0;
    i int;
BEGIN
    SELECT sum(c) INTO total FROM unnest(counts) AS c;
    IF total IS NULL OR total = 0 THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. array_length(counts, 1) LOOP
        IF counts[i] > 0 AND seen + counts[i] >= q * total THEN
            IF i > array_length(bounds, 1) THEN
                RETURN bounds[array_length(bounds, 1)];
            END IF;
            RETURN lower + (bounds[i] - lower) * (q * total - seen) / counts[i];
        END IF;
        seen := seen + counts[i];
        IF i <= array_length(bounds, 1) THEN
            lower := bounds[i];
        END IF;
    END LOOP;
    RETURN lower;
END
$$;

-- Per lane and in total, over a window (since `since`, in whole five minutes; NULL: all
-- time, from job_totals): the lane_stats columns, plus the counters. pending and
-- processing are the jobs waiting and running now. Cost is the window's list price less
-- the lane's free runner minutes.
CREATE OR REPLACE FUNCTION lane_stats_window(since timestamptz)
RETURNS TABLE (
    lane text, pending bigint, processing bigint, completed bigint, failed bigint,
    cancelled bigint, success_rate numeric, wait_p50_s double precision,
    wait_p95_s double precision, run_p50_s double precision, run_p95_s double precision,
    items_per_hour numeric, points_per_item numeric, estimated_cost numeric,
    cost_per_job numeric, cost_per_item numeric, inngest_cost numeric, enqueued bigint,
    started bigint, retried bigint, attempts_failed bigint, fallbacks_in bigint,
    fallbacks_out bigint
) LANGUAGE sql STABLE AS $$
WITH src AS (
    SELECT lane, enqueued, started, completed, attempts_failed - retried AS failed, retried,
           attempts_failed, cancelled, fallbacks_in,
           fallbacks_out, items, api_points, runs, steps, billed_minutes, run_seconds,
           wait_hist, run_hist
    FROM job_totals WHERE since IS NULL
    UNION ALL
    SELECT lane, enqueued, started, completed, attempts_failed - retried AS failed, retried,
           attempts_failed, cancelled, fallbacks_in,
           fallbacks_out, items, api_points, runs, steps, billed_minutes, run_seconds,
           wait_hist, run_hist
    FROM job_rollups
    WHERE since IS NOT NULL AND bucket >= date_bin('5 minutes', since, 'epoch')
), lanes AS (
    SELECT s.lane, sum(enqueued) AS enqueued, sum(started) AS started,
           sum(completed) AS completed, sum(failed) AS failed, sum(retried) AS retried,
           sum(attempts_failed) AS attempts_failed,
           sum(cancelled) AS cancelled, sum(fallbacks_in) AS fallbacks_in,
           sum(fallbacks_out) AS fallbacks_out, sum(items) AS items,
           sum(api_points) AS api_points, sum(runs) AS runs, sum(steps) AS steps,
           sum(billed_minutes) AS billed_minutes, sum(run_seconds) AS run_seconds,
           (SELECT array_agg(n ORDER BY i) FROM (
                SELECT i, sum(x)::bigint AS n FROM src s2, unnest(s2.wait_hist)
                    WITH ORDINALITY AS u(x, i)
                WHERE s2.lane = s.lane GROUP BY i) h) AS wait_hist,
           (SELECT array_agg(n ORDER BY i) FROM (
                SELECT i, sum(x)::bigint AS n FROM src s2, unnest(s2.run_hist)
                    WITH ORDINALITY AS u(x, i)
                WHERE s2.lane = s.lane GROUP BY i) h) AS run_hist
    FROM src s GROUP BY s.lane
), priced AS (
    SELECT l.*,
           COALESCE(p.per_run * l.runs + p.per_step * l.steps
                    + p.per_minute * greatest(l.billed_minutes - p.free_minutes, 0), 0) AS cost,
           COALESCE(i.per_run * l.runs + i.per_step * l.steps, 0) AS inngest_cost
    FROM lanes l
    LEFT JOIN lane_prices p ON p.lane = l.lane
    LEFT JOIN lane_prices i ON i.lane = 'inngest'
), both_levels AS (
    SELECT * FROM priced
    UNION ALL
    SELECT 'total', sum(enqueued), sum(started), sum(completed), sum(failed), sum(retried),
           sum(attempts_failed), sum(cancelled), sum(fallbacks_in), sum(fallbacks_out),
           sum(items), sum(api_points),
           sum(runs), sum(steps), sum(billed_minutes), sum(run_seconds),
           (SELECT array_agg(n ORDER BY i) FROM (
                SELECT i, sum(x)::bigint AS n FROM priced p2, unnest(p2.wait_hist)
                    WITH ORDINALITY AS u(x, i) GROUP BY i) h),
           (SELECT array_agg(n ORDER BY i) FROM (
                SELECT i, sum(x)::bigint AS n FROM priced p2, unnest(p2.run_hist)
                    WITH ORDINALITY AS u(x, i) GROUP BY i) h),
           sum(cost), sum(inngest_cost)
    FROM priced
), live AS (
    SELECT COALESCE(j.lane, 'unrouted') AS lane,
           count(*) FILTER (WHERE j.status <> 'running') AS pending,
           count(*) FILTER (WHERE j.status = 'running') AS processing
    FROM capture_jobs j
    WHERE j.status IN ('queued', 'routed', 'dispatched', 'retry_scheduled', 'running')
    GROUP BY COALESCE(j.lane, 'unrouted')
), live_both AS (
    SELECT * FROM live
    UNION ALL
    SELECT 'total', COALESCE(sum(pending), 0)::bigint, COALESCE(sum(processing), 0)::bigint
    FROM live
)
SELECT COALESCE(b.lane, v.lane),
       COALESCE(v.pending, 0), COALESCE(v.processing, 0),
       COALESCE(b.completed, 0)::bigint, COALESCE(b.failed, 0)::bigint,
       COALESCE(b.cancelled, 0)::bigint,
       round(b.completed / NULLIF(b.completed + b.failed, 0), 4),
       jobstore_quantile(0.5, b.wait_hist), jobstore_quantile(0.95, b.wait_hist),
       jobstore_quantile(0.5, b.run_hist), jobstore_quantile(0.95, b.run_hist),
       round((b.items * 3600 / NULLIF(b.run_seconds, 0))::numeric, 1),
       round(b.api_points / NULLIF(b.items, 0), 4),
       round(b.cost::numeric, 4),
       round((b.cost / NULLIF(b.enqueued, 0))::numeric, 6),
       round((b.cost / NULLIF(b.items, 0))::numeric, 6),
       round(b.inngest_cost::numeric, 4),
       COALESCE(b.enqueued, 0)::bigint, COALESCE(b.started, 0)::bigint,
       COALESCE(b.retried, 0)::bigint, COALESCE(b.attempts_failed, 0)::bigint,
       COALESCE(b.fallbacks_in, 0)::bigint,
       COALESCE(b.fallbacks_out, 0)::bigint
FROM both_levels b FULL JOIN live_both v ON v.lane = b.lane
$$;

-- All time, as before, now from the totals (psql: SELECT * FROM lane_stats).
DROP VIEW IF EXISTS lane_stats;
CREATE VIEW lane_stats AS SELECT * FROM lane_stats_window(NULL);

-- Per lane and five minutes since `since`: jobs enqueued and ended, their mean wait and
-- run time, and the queue depth at the bucket's end (the jobs waiting now, less what
-- came in since and plus what started since): the dashboard's charts.
CREATE OR REPLACE FUNCTION lane_series(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (at timestamptz, lane text, created bigint, finished bigint,
               wait_s double precision, run_s double precision, depth bigint)
LANGUAGE sql STABLE AS $$
WITH lanes (lane) AS (VALUES ('inngest'), ('github_actions'), ('local')),
buckets AS (
    SELECT b AS at FROM generate_series(date_bin('5 minutes', since, 'epoch'),
                                        date_bin('5 minutes', until, 'epoch'),
                                        interval '5 minutes') AS b
), per AS (
    SELECT bucket, lane, sum(enqueued) AS enqueued,
           sum(completed + attempts_failed - retried + cancelled) AS finished,
           sum(started) AS started,
           sum(retried + rescheduled) AS retried, sum(wait_sum) AS wait_sum,
           sum((SELECT sum(x) FROM unnest(wait_hist) AS x)) AS waits,
           sum(run_sum) AS run_sum, sum(completed) AS completed
    FROM job_rollups WHERE bucket >= date_bin('5 minutes', since, 'epoch')
      AND bucket <= until
    GROUP BY bucket, lane
), waiting AS (
    SELECT COALESCE(lane, 'unrouted') AS lane, count(*) AS n FROM capture_jobs
    WHERE status IN ('queued', 'routed', 'dispatched', 'retry_scheduled')
    GROUP BY COALESCE(lane, 'unrouted')
), grid AS (
    SELECT b.at, l.lane, COALESCE(p.enqueued, 0) AS created, COALESCE(p.finished, 0) AS finished,
           p.wait_sum / NULLIF(p.waits, 0) AS wait_s, p.run_sum / NULLIF(p.completed, 0) AS run_s,
           COALESCE(p.enqueued + p.retried - p.started, 0) AS inflow
    FROM buckets b CROSS JOIN lanes l
    LEFT JOIN per p ON p.bucket = b.at AND p.lane = l.lane
)
SELECT g.at, g.lane, g.created::bigint, g.finished::bigint, g.wait_s, g.run_s,
       greatest(COALESCE(w.n, 0) - COALESCE(sum(g.inflow) OVER (
           PARTITION BY g.lane ORDER BY g.at DESC
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0)::bigint AS depth
FROM grid g LEFT JOIN waiting w ON w.lane = g.lane
ORDER BY g.at, g.lane
$$;

-- Fallbacks from the totals, instead of a scan of every job.
DROP VIEW IF EXISTS lane_dispatch_stats;
CREATE VIEW lane_dispatch_stats AS
WITH lanes (lane) AS (
    VALUES ('inngest'), ('github_actions'), ('local')
), recent AS (
    SELECT lane,
           count(*) FILTER (WHERE ok) AS taken,
           count(*) FILTER (WHERE NOT ok) AS refused,
           max(at) FILTER (WHERE ok) AS last_taken,
           max(at) FILTER (WHERE NOT ok) AS last_refused
    FROM lane_dispatches
    WHERE at > now() - interval '1 hour'
    GROUP BY lane
), fell AS (
    SELECT lane, sum(fallbacks_in) AS n_in, sum(fallbacks_out) AS n_out FROM job_totals
    GROUP BY lane
)
SELECT l.lane,
       COALESCE(r.taken, 0) AS dispatched_last_hour,
       COALESCE(r.refused, 0) AS refused_last_hour,
       r.last_taken,
       r.last_refused,
       COALESCE(f.n_in, 0)::bigint AS fallbacks_in,
       COALESCE(f.n_out, 0)::bigint AS fallbacks_out
FROM lanes l
LEFT JOIN recent r USING (lane)
LEFT JOIN fell f USING (lane)
ORDER BY l.lane;

-- The rollups start empty: the views replay the log once to fill them (capture_jobs rows
-- are rewritten with what they already hold).
DELETE FROM job_views_tracking WHERE application_name = 'jobs';
