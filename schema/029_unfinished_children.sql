-- A child job's end asks whether any of its siblings is still unfinished, and a parent's
-- Actions run asks for the next few routed children: an index of the unfinished ones
-- only, so both cost the same for a parent of 5 children and of 4,000 (reading every
-- sibling each time made a monorepo's backfill quadratic).
CREATE INDEX IF NOT EXISTS job_heads_unfinished_children ON job_heads (parent_id, status, job_id)
    WHERE parent_id IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
