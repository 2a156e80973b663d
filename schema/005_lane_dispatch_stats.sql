-- Per lane: how dispatching went in the last hour (from lane_dispatches, written with the
-- jobs' Dispatched/DispatchFailed events) and how many jobs fell back into or out of it.
CREATE OR REPLACE VIEW lane_dispatch_stats AS
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
), fell_in AS (
    SELECT lane, count(*) AS n FROM capture_jobs WHERE fallback_from IS NOT NULL GROUP BY lane
), fell_out AS (
    SELECT fallback_from AS lane, count(*) AS n FROM capture_jobs
    WHERE fallback_from IS NOT NULL GROUP BY fallback_from
)
SELECT l.lane,
       COALESCE(r.taken, 0) AS dispatched_last_hour,
       COALESCE(r.refused, 0) AS refused_last_hour,
       r.last_taken,
       r.last_refused,
       COALESCE(i.n, 0) AS fallbacks_in,
       COALESCE(o.n, 0) AS fallbacks_out
FROM lanes l
LEFT JOIN recent r USING (lane)
LEFT JOIN fell_in i USING (lane)
LEFT JOIN fell_out o USING (lane)
ORDER BY l.lane;
