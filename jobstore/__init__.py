"""Generic job state: an event-sourced job store, its router, lanes and projections."""
