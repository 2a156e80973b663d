-- API budgets shared by every worker, lane and machine (jobstore/budgets.py): per
-- credential bucket (an App installation, a user whose tokens share a budget, a token's
-- fingerprint; never a token) and resource, what the API last said is left.
CREATE TABLE IF NOT EXISTS api_budgets (
    credential    text NOT NULL,
    resource      text NOT NULL,  -- graphql, core
    label         text NOT NULL DEFAULT '',
    limit_points  integer NOT NULL,
    remaining     integer,        -- null until the API has said
    reset_at      timestamptz,
    observed_at   timestamptz,
    minute_start  timestamptz,    -- the pace against secondary limits
    minute_points integer NOT NULL DEFAULT 0,
    PRIMARY KEY (credential, resource)
);

-- Points held by requests in flight; a crashed worker's expire.
CREATE TABLE IF NOT EXISTS api_reservations (
    id         text PRIMARY KEY,
    credential text NOT NULL,
    resource   text NOT NULL,
    points     integer NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_reservations_of ON api_reservations (credential, resource);
