-- GitHub webhook deliveries as received (capture.webhooks.receiver): one row per
-- X-GitHub-Delivery, written only after the signature checked out, before the answer.
CREATE TABLE IF NOT EXISTS github_deliveries (
    delivery_id     text        PRIMARY KEY,
    event           text        NOT NULL,
    action          text,
    installation_id bigint,
    repository_id   bigint,
    repository      text,
    received_at     timestamptz NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'received',  -- received, ignored
    duplicates      integer     NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS github_deliveries_received ON github_deliveries (received_at DESC);
