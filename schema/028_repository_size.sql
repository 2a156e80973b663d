-- How many pull requests a repository has, as the last probe saw it (pullRequests'
-- totalCount rides the probe query for free): the router's "large repository" without a
-- static list (JOBSTORE_LARGE_PULL_REQUESTS).
ALTER TABLE repo_probes ADD COLUMN IF NOT EXISTS pull_requests integer;
