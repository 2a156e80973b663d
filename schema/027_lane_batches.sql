-- Batches: small scheduled refreshes the Actions lane runs together, in one workflow run
-- (one runner's setup and one billed minute instead of one each). The dispatcher sends
-- the batch's leader as the run's job and records each member here, dispatched to the
-- same run; the run does the leader, then its members, each its own job (own events,
-- progress and result). A run holds one place of the lane however many it carries.
CREATE TABLE IF NOT EXISTS lane_batches (
    member          uuid        NOT NULL,
    member_attempt  integer     NOT NULL,
    leader          uuid        NOT NULL,
    leader_attempt  integer     NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (member, member_attempt)
);
CREATE INDEX IF NOT EXISTS lane_batches_leader ON lane_batches (leader, leader_attempt);
CREATE INDEX IF NOT EXISTS lane_batches_at ON lane_batches (at);
