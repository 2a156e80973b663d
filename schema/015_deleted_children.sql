-- Reviews and comments GitHub no longer shows: when a pull request's whole list of them
-- was fetched and a stored one was not in it, it is marked with when it was seen gone
-- (kept for the record; readers of live data filter on deleted_at IS NULL). Seen again
-- (a capture that raced the deletion's) it is live again.
ALTER TABLE comments ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE reviews ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
