"""The pull-request fetcher: the GraphQL listing and nested batches by node id
(`collect`), follow-up pages of long connections (`pages`), the REST paths and fallback
(`rest`), and the shape of each by-id query (`shape`, pure)."""
