"""The product's scripts, one module per `bin/` name, each also a `prcapture-*` console
script. Every command is defined in its own module; groups are assembled there."""

__all__ = ["db", "enqueue", "jobs", "plan", "run_job", "serve", "serve_inngest", "track"]
