-- A delivery read whole from GitHub's log of the App's deliveries (it never reached the
-- receiver: dropped, or the receiver unreachable) rather than posted to us. Many of them
-- and none posted lately: GitHub cannot reach the receiver (WebhookReceiverUnreachable).
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS pulled boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS github_deliveries_pulled ON github_deliveries (received_at)
    WHERE pulled;
