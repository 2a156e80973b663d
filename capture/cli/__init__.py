"""The product's scripts, one module per `bin/` name, each also a `prcapture-*` console
script. Every command is defined in its own module; groups are assembled there."""

__all__ = ["db", "enqueue", "jobs", "run_job", "serve_inngest"]
