"""Numbered SQL migrations, applied in order by jobstore.db.migrate (package data)."""
