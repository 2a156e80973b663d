-- Every dispatch to a lane and whether the lane took it, written in the same transaction
-- as the job's Dispatched or DispatchFailed event (jobstore.recorder). The router's lane
-- health reads the latest rows per lane; nothing else writes here.
CREATE TABLE IF NOT EXISTS lane_dispatches (
    id      bigserial   PRIMARY KEY,
    lane    text        NOT NULL,
    job_id  uuid        NOT NULL,
    ok      boolean     NOT NULL,
    error   text,
    at      timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS lane_dispatches_recent ON lane_dispatches (lane, at DESC);
