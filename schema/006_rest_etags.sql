-- ETags of REST answers, kept across jobs, so asking again about an unchanged resource is
-- a conditional request GitHub answers 304 for free. Keyed by credential fingerprint
-- (sha256 of the token, shortened; never the token) because answers vary by credential.
CREATE TABLE IF NOT EXISTS rest_etags (
    credential text NOT NULL,
    url        text NOT NULL,
    etag       text NOT NULL,
    body       jsonb NOT NULL,
    link       text,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential, url)
);
