-- Read models built from the job event log by jobstore.views (exactly once, tracked in
-- job_views_tracking). Plain tables and views: read them with psql.

CREATE TABLE IF NOT EXISTS capture_jobs (
    job_id            uuid PRIMARY KEY,
    job_type          text        NOT NULL,
    repository        text        NOT NULL,
    lane              text,
    status            text        NOT NULL,
    trigger           text        NOT NULL,
    priority          text        NOT NULL,
    since             timestamptz,
    until             timestamptz,
    days              numeric,
    pr_count          integer     NOT NULL DEFAULT 0,
    max_items         integer,
    dedupe_key        text        NOT NULL,
    parent_id         uuid,
    route_rule        text,
    route_reason      text,
    fallback_from     text,
    attempt           integer     NOT NULL DEFAULT 1,
    failures          integer     NOT NULL DEFAULT 0,
    dispatch_failures integer     NOT NULL DEFAULT 0,
    worker            text,
    items_done        bigint      NOT NULL DEFAULT 0,
    items_total       bigint,
    items             bigint      NOT NULL DEFAULT 0,
    api_points        bigint      NOT NULL DEFAULT 0,
    cursor            text,
    external_ref      text,
    run_url           text,
    last_error        text,
    not_before        timestamptz,
    runs              integer     NOT NULL DEFAULT 0,
    steps             integer     NOT NULL DEFAULT 0,
    run_seconds       double precision NOT NULL DEFAULT 0,
    billed_minutes    integer     NOT NULL DEFAULT 0,
    attempt_started_at timestamptz,
    created_at        timestamptz NOT NULL,
    routed_at         timestamptz,
    dispatched_at     timestamptz,
    started_at        timestamptz,
    last_event_at     timestamptz NOT NULL,
    finished_at       timestamptz,
    version           integer     NOT NULL
);

CREATE INDEX IF NOT EXISTS capture_jobs_status ON capture_jobs (status, lane);
CREATE INDEX IF NOT EXISTS capture_jobs_repository ON capture_jobs (repository, job_type);
CREATE INDEX IF NOT EXISTS capture_jobs_created ON capture_jobs (created_at);

-- The audit trail: the job event log itself, decoded for psql (always current, nothing to
-- project). eventsourcing stores each event as JSON (no compression or encryption is
-- configured); typed values ({"_type_": ..., "_data_": ...}) are unwrapped.
CREATE OR REPLACE VIEW job_audit AS
SELECT e.originator_id AS job_id,
       e.originator_version AS version,
       (x.s->'timestamp'->>'_data_')::timestamptz AS at,
       split_part(e.topic, '.', 3) AS event,
       (SELECT COALESCE(jsonb_object_agg(key, CASE
                   WHEN value->>'_type_' = 'uuid_hex' THEN to_jsonb((value->>'_data_')::uuid)
                   WHEN jsonb_typeof(value) = 'object' AND value ? '_data_' THEN value->'_data_'
                   ELSE value END), '{}')
        FROM jsonb_each(x.s) WHERE key NOT IN ('timestamp', 'originator_topic')) AS fields,
       e.notification_id
FROM jobs_events e
CROSS JOIN LATERAL (SELECT convert_from(e.state, 'UTF8')::jsonb AS s) AS x
WHERE e.topic LIKE 'jobstore.domain:Job.%';

-- Prices per lane, written from the price table (jobstore/prices.toml or JOBSTORE_PRICES).
CREATE TABLE IF NOT EXISTS lane_prices (
    lane              text PRIMARY KEY,
    per_run           double precision NOT NULL DEFAULT 0,
    per_step          double precision NOT NULL DEFAULT 0,
    per_minute        double precision NOT NULL DEFAULT 0,
    free_minutes      double precision NOT NULL DEFAULT 0
);

-- The original system's table, by its column names, for dashboards written against it.
CREATE OR REPLACE VIEW progressive_capture_jobs AS
SELECT job_id AS id,
       job_type,
       repository AS repository_id,
       lane AS processor_type,
       CASE WHEN status IN ('queued', 'routed', 'dispatched', 'retry_scheduled') THEN 'pending'
            WHEN status = 'running' THEN 'processing'
            ELSE status END AS status,
       days AS time_range_days,
       CASE WHEN lane = 'github_actions' THEN external_ref END AS workflow_run_id,
       jsonb_strip_nulls(jsonb_build_object(
           'route_rule', route_rule, 'route_reason', route_reason, 'attempt', attempt,
           'items_done', items_done, 'items_total', items_total, 'api_points', api_points,
           'run_url', run_url, 'trigger', trigger, 'priority', priority)) AS metadata,
       last_error AS error,
       created_at,
       started_at,
       finished_at AS completed_at
FROM capture_jobs;

-- Cost of each job on its own lane and, for comparison, on Inngest.
CREATE OR REPLACE VIEW job_costs AS
SELECT j.job_id, j.lane, j.status, j.items, j.items_done, j.runs, j.steps, j.billed_minutes,
       COALESCE(p.per_run * j.runs + p.per_step * j.steps + p.per_minute * j.billed_minutes, 0)
           AS cost,
       i.per_run * j.runs + i.per_step * j.steps AS inngest_cost
FROM capture_jobs j
LEFT JOIN lane_prices p ON p.lane = j.lane
CROSS JOIN (SELECT * FROM lane_prices WHERE lane = 'inngest'
            UNION ALL SELECT 'inngest', 0, 0, 0, 0
            WHERE NOT EXISTS (SELECT 1 FROM lane_prices WHERE lane = 'inngest')) i;

-- Per lane and in total: counts, success rate, timings, throughput and cost. The cost
-- of a lane is its jobs' list price less its free runner minutes.
CREATE OR REPLACE VIEW lane_stats AS
WITH lane_cost AS (
    SELECT COALESCE(c.lane, 'unrouted') AS lane,
           sum(c.cost) - COALESCE(least(sum(c.billed_minutes), max(p.free_minutes))
                                  * max(p.per_minute), 0) AS cost
    FROM job_costs c LEFT JOIN lane_prices p ON p.lane = c.lane
    GROUP BY COALESCE(c.lane, 'unrouted')
), lane_cost_total AS (
    SELECT * FROM lane_cost UNION ALL SELECT 'total', COALESCE(sum(cost), 0) FROM lane_cost
), per AS (
    SELECT COALESCE(j.lane, 'unrouted') AS lane, j.status, j.created_at, j.started_at,
           j.run_seconds, j.items, j.api_points, c.cost
    FROM capture_jobs j JOIN job_costs c USING (job_id)
), both_levels AS (
    SELECT * FROM per
    UNION ALL
    SELECT 'total', status, created_at, started_at, run_seconds, items, api_points, cost FROM per
)
SELECT lane,
       count(*) FILTER (WHERE status IN ('queued', 'routed', 'dispatched', 'retry_scheduled'))
           AS pending,
       count(*) FILTER (WHERE status = 'running') AS processing,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       round(count(*) FILTER (WHERE status = 'completed')::numeric
             / NULLIF(count(*) FILTER (WHERE status IN ('completed', 'failed')), 0), 4)
           AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
           AS wait_p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
           AS wait_p95_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY run_seconds)
           FILTER (WHERE status = 'completed') AS run_p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY run_seconds)
           FILTER (WHERE status = 'completed') AS run_p95_s,
       round((sum(items) FILTER (WHERE status = 'completed') * 3600
             / NULLIF(sum(run_seconds) FILTER (WHERE status = 'completed'), 0))::numeric, 1)
           AS items_per_hour,
       round(sum(api_points)::numeric / NULLIF(sum(items), 0), 4) AS points_per_item,
       round(max(lc.cost)::numeric, 4) AS estimated_cost,
       round((max(lc.cost) / NULLIF(count(*), 0))::numeric, 6) AS cost_per_job,
       round((max(lc.cost) / NULLIF(sum(items), 0))::numeric, 6) AS cost_per_item
FROM both_levels JOIN lane_cost_total lc USING (lane)
GROUP BY lane;

-- Per repository and job type: windows captured by completed jobs, merged, and the gaps.
CREATE OR REPLACE VIEW repo_coverage AS
WITH windows AS (
    SELECT repository, job_type, since, until, finished_at FROM capture_jobs
    WHERE status = 'completed' AND since IS NOT NULL AND until IS NOT NULL
), ordered AS (
    SELECT *, max(until) OVER (PARTITION BY repository, job_type ORDER BY since, until
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM windows
), islands AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR since > reach THEN 1 ELSE 0 END)
              OVER (PARTITION BY repository, job_type ORDER BY since, until) AS island
    FROM ordered
), merged AS (
    SELECT repository, job_type, island, min(since) AS since, max(until) AS until
    FROM islands GROUP BY repository, job_type, island
), gaps AS (
    SELECT repository, job_type, until AS gap_from,
           lead(since) OVER (PARTITION BY repository, job_type ORDER BY since) AS gap_to
    FROM merged
)
SELECT m.repository, m.job_type,
       min(m.since) AS covered_from,
       max(m.until) AS covered_until,
       jsonb_agg(jsonb_build_array(m.since, m.until) ORDER BY m.since) AS windows,
       (SELECT COALESCE(jsonb_agg(jsonb_build_array(g.gap_from, g.gap_to) ORDER BY g.gap_from),
                        '[]'::jsonb)
        FROM gaps g WHERE g.repository = m.repository AND g.job_type = m.job_type
          AND g.gap_to IS NOT NULL) AS gaps,
       (SELECT max(finished_at) FROM capture_jobs c
        WHERE c.repository = m.repository AND c.job_type = m.job_type
          AND c.status = 'completed') AS last_success
FROM merged m
GROUP BY m.repository, m.job_type;
