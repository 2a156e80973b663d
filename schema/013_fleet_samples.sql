-- The fleet over time, for the dashboard: how many repositories are tracked, how many are
-- still bootstrapping and how many are past their target, sampled by the sweeper (at most
-- every five minutes; a day is 288 small rows).
CREATE TABLE IF NOT EXISTS fleet_samples (
    at            timestamptz PRIMARY KEY,
    tracked       integer NOT NULL,
    bootstrapping integer NOT NULL,
    breached      integer NOT NULL
);
