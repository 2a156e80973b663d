-- Every per-job query answered by an index, so a job's cost does not grow with the data
-- stored (tests/capture/test_costs.py pins the plans with EXPLAIN).

-- A pull request's reviews and comments (reconciling them, the query planner's histogram).
CREATE INDEX IF NOT EXISTS comments_of_pull_request ON comments (pull_request_id);
CREATE INDEX IF NOT EXISTS reviews_of_pull_request ON reviews (pull_request_id);

-- A repository by name, however GitHub spells it (looked up on every job).
CREATE INDEX IF NOT EXISTS repositories_by_name ON repositories (lower(full_name));

-- A repository's most recently updated pull requests captured whole (the histogram).
CREATE INDEX IF NOT EXISTS pull_requests_recent
    ON pull_requests (repository_id, updated_at DESC) WHERE details_at IS NOT NULL;

-- A lane's waiting jobs in the order workers take them (priority, then age), so a claim
-- reads the first unlocked one instead of sorting the lane's whole queue.
CREATE INDEX IF NOT EXISTS job_heads_queue
    ON job_heads (lane, (CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END),
                  created_at)
    WHERE status IN ('routed', 'dispatched');
