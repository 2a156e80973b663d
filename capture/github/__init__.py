"""GitHub clients: one session owns transport, rate limits and accounting."""
