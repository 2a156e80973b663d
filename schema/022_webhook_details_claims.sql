-- Pull requests whose files and commits a webhook did not carry are captured in batches
-- across repositories (one nodes(ids:) query for many of them): the job that takes a
-- batch claims its deliveries, so two jobs never refresh the same pull request. A claim
-- older than a few minutes is a job that died: its deliveries are taken again.
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS claimed_by uuid;
ALTER TABLE github_deliveries ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
-- every delivery waiting for its refresh, oldest first (the batch's read)
CREATE INDEX IF NOT EXISTS github_deliveries_refresh ON github_deliveries (received_at)
    WHERE status = 'refresh';
