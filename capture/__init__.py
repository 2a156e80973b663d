"""The GitHub part: clients, rate-limit budget, query documents, handlers, storage, sandbox."""
