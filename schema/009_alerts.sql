-- Alerts the sweeper found (capture/ops/alerts.py): one row per firing, resolved when it
-- stops, so each start and end is notified once however many sweepers run.
CREATE TABLE IF NOT EXISTS alert_state (
    id           bigserial PRIMARY KEY,
    rule         text NOT NULL,
    key          text NOT NULL,
    detail       text NOT NULL,
    firing_since timestamptz NOT NULL,
    resolved_at  timestamptz,
    -- what the notifier delivered: a webhook that failed is tried again next pass
    notified_firing   boolean NOT NULL DEFAULT false,
    notified_resolved boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_state_open ON alert_state (rule, key)
    WHERE resolved_at IS NULL;
