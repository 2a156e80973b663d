-- Captured GitHub data, keyed by GitHub's own ids, written by capture/storage.py.
CREATE TABLE IF NOT EXISTS repositories (
    id          bigint PRIMARY KEY,
    node_id     text,
    full_name   text NOT NULL UNIQUE,
    created_at  timestamptz,
    captured_at timestamptz NOT NULL DEFAULT now()
);

-- Users and bots by GitHub id, so a renamed login updates one row. Deleted accounts have
-- no row: their pull requests, reviews and comments keep a null author.
CREATE TABLE IF NOT EXISTS contributors (
    id         bigint PRIMARY KEY,
    login      text NOT NULL,
    kind       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS pull_requests (
    id               bigint PRIMARY KEY,
    node_id          text NOT NULL,
    repository_id    bigint NOT NULL REFERENCES repositories (id),
    number           integer NOT NULL,
    title            text NOT NULL,
    body             text,
    state            text NOT NULL,
    is_draft         boolean NOT NULL,
    author_id        bigint REFERENCES contributors (id),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    closed_at        timestamptz,
    merged_at        timestamptz,
    base_ref         text,
    head_ref         text,
    head_sha         text,
    labels           text[] NOT NULL DEFAULT '{}',
    -- details (pr-details, historical-sync); null until captured
    merged_by_id     bigint REFERENCES contributors (id),
    merge_commit_sha text,
    additions        integer,
    deletions        integer,
    changed_files    integer,
    commits_count    integer,
    details_at       timestamptz,
    UNIQUE (repository_id, number)
);
CREATE INDEX IF NOT EXISTS pull_requests_created ON pull_requests (repository_id, created_at);

CREATE TABLE IF NOT EXISTS reviews (
    id              bigint PRIMARY KEY,
    pull_request_id bigint NOT NULL REFERENCES pull_requests (id),
    author_id       bigint REFERENCES contributors (id),
    state           text NOT NULL,
    body            text,
    submitted_at    timestamptz
);

-- Issue comments (kind 'issue') and review comments (kind 'review': path, line, reply-to).
CREATE TABLE IF NOT EXISTS comments (
    id              bigint PRIMARY KEY,
    pull_request_id bigint NOT NULL REFERENCES pull_requests (id),
    kind            text NOT NULL,
    author_id       bigint REFERENCES contributors (id),
    body            text,
    path            text,
    line            integer,
    original_line   integer,
    in_reply_to_id  bigint,
    review_id       bigint,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS pr_files (
    pull_request_id bigint NOT NULL REFERENCES pull_requests (id),
    path            text NOT NULL,
    additions       integer NOT NULL,
    deletions       integer NOT NULL,
    change_type     text NOT NULL,
    PRIMARY KEY (pull_request_id, path)
);

CREATE TABLE IF NOT EXISTS commits (
    pull_request_id bigint NOT NULL REFERENCES pull_requests (id),
    sha             text NOT NULL,
    message         text NOT NULL,
    author_name     text,
    author_email    text,
    author_id       bigint REFERENCES contributors (id),
    authored_at     timestamptz,
    committed_at    timestamptz,
    PRIMARY KEY (pull_request_id, sha)
);

-- Incremental repository-sync: the newest updatedAt stored per repository.
CREATE TABLE IF NOT EXISTS sync_watermarks (
    repository  text PRIMARY KEY,
    updated_at  timestamptz NOT NULL,
    advanced_at timestamptz NOT NULL DEFAULT now()
);
