-- GitHub's newest updated_at for a pull request that a webhook told without carrying the
-- pull request whole: an issue comment's delivery carries the issue (the pull request's
-- updated_at, bumped by the comment) and the comment, not the pull request. The stored
-- row keeps its own updated_at (its fields are as of that time); the planner's probe,
-- seeing the pull request move, finds the move already delivered and refreshes nothing.
ALTER TABLE pull_requests ADD COLUMN IF NOT EXISTS seen_updated_at timestamptz;
